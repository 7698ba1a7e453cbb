"""Scenario configuration: frozen dataclasses with defaults, read strictly from TOML.

A scenario file (workloads/scenarios/NAME.toml) may set any subset of the keys below; the rest
keep their defaults. Loading is strict: an unknown section or key, a value of the wrong type or
one outside its range raises `InputRefused` naming the scenario, the key path and the rule,
e.g. "scenario quick: unknown key rate.mean_per_sec".

Sections: scenario, population, time, rate, bursts (a list of tables), mix, amounts, merchant,
crypto, clients. Money is in minor units (int); model time is in seconds of the modelled day
(the sim clock runs `time.compression` times faster).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from sim.errors import InputRefused

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
SHARE_TOLERANCE = 1e-9
SECONDS_PER_DAY = 86_400


def _key(default, low=None, high=None, low_open=False):
    """A config field with an allowed range [low, high] (or (low, high] when low_open)."""
    return field(default=default, metadata={"low": low, "high": high, "low_open": low_open})


def _share(default):
    return _key(default, 0.0, 1.0)


@dataclass(frozen=True)
class ScenarioInfo:
    name: str = "default"
    description: str = ""


@dataclass(frozen=True)
class Population:
    users: int = _key(1_000_000, 2, 2**31)
    eur_share: float = _share(0.15)  # share of communities (and their users) on EUR
    users_per_merchant: int = _key(2_000, 1)
    users_per_creator: int = _key(1_000, 1)
    crypto_holder_share: float = _share(0.08)  # users with BTC, ETH and USDC wallets
    community_size: int = _key(50, 2, 1_000_000)
    friends_per_user: int = _key(12, 1, 10_000)
    sender_zipf: float = _key(0.7, 0.0, 10.0)
    merchant_zipf: float = _key(1.1, 0.0, 10.0)
    creator_zipf: float = _key(1.2, 0.0, 10.0)


@dataclass(frozen=True)
class Time:
    days: int = _key(1, 1, 3_650)
    tick_s: float = _key(3_600.0, 0.0, SECONDS_PER_DAY, low_open=True)
    start_weekday: int = _key(0, 0, 6)  # 0 Monday .. 6 Sunday
    holidays: tuple[int, ...] = ()  # day indices (0 = first day) that are holidays
    compression: float = _key(1.0, 0.0, 1e9, low_open=True)  # model seconds per sim second
    funding_rows_per_epoch: int = _key(200_000, 1)


@dataclass(frozen=True)
class Rate:
    mean_per_s: float = _key(40.0, 0.0, 1e9, low_open=True)  # arrivals per model second
    scale: float = _key(1.0, 0.0, 1e9, low_open=True)
    peaks: tuple[tuple[float, float], ...] = ((10.0, 13.0), (17.0, 21.5))  # hours [from, to)
    peak_level: float = _key(3.0, 0.0)  # relative levels, normalised to a daily mean of 1
    day_level: float = _key(0.8, 0.0)
    night_level: float = _key(0.3, 0.0)
    night_end_hour: float = _key(6.0, 0.0, 24.0)
    saturday_uplift: float = _key(1.25, 0.0)
    holiday_multiplier: float = _key(1.75, 0.0)


BURST_KINDS = ("tip", "flash_sale")


@dataclass(frozen=True)
class Burst:
    kind: str = "tip"  # tip: viral tip jar (one creator); flash_sale: card auths at one merchant
    day: int = _key(0, 0)
    start_hour: float = _key(20.0, 0.0, 24.0)
    peak_multiplier: float = _key(12.0, 0.0)  # extra rate at the peak, times the mean rate
    ramp_s: float = _key(30.0, 0.0, 3_600.0, low_open=True)
    decay_s: float = _key(300.0, 0.0, 86_400.0, low_open=True)
    target_rank: int = _key(0, 0)  # creator or merchant rank (0 = hottest)


@dataclass(frozen=True)
class Mix:
    """Shares of arrivals by count; follow-ups (captures, fees, settles...) come on top."""

    p2p: float = _share(0.70)
    tip: float = _share(0.05)
    merchant: float = _share(0.18)  # card authorisations
    cash_in: float = _share(0.01)
    cash_out: float = _share(0.01)
    crypto: float = _share(0.05)


@dataclass(frozen=True)
class Amounts:
    p2p_median_minor: int = _key(3_000, 1)
    p2p_sigma: float = _key(0.9, 0.0, 5.0)
    tail_share: float = _share(0.03)  # share of P2P/tip/card amounts from the Pareto tail
    tail_alpha: float = _key(2.3, 1.0, 10.0, low_open=True)
    tail_start_minor: int = _key(20_000, 1)
    tip_median_minor: int = _key(500, 1)
    tip_sigma: float = _key(1.0, 0.0, 5.0)
    card_median_minor: int = _key(3_500, 1)
    card_sigma: float = _key(0.9, 0.0, 5.0)
    cash_median_minor: int = _key(10_000, 1)
    cash_sigma: float = _key(0.8, 0.0, 5.0)
    max_minor: int = _key(100_000_000, 1, 2**53)
    funding_cover: float = _key(2.0, 0.0)
    funding_base_minor: int = _key(20_000, 1)
    merchant_float_minor: int = _key(100_000, 1)


@dataclass(frozen=True)
class Merchant:
    capture_share: float = _share(0.85)
    void_share: float = _share(0.08)  # the rest of the authorisations expire
    partial_capture_share: float = _share(0.10)
    capture_delay_mean_s: float = _key(1_800.0, 0.0)
    authorization_timeout_s: float = _key(604_800.0, 1.0)
    fee_ppm: int = _key(29_000, 0, 1_000_000)
    refund_share: float = _share(0.03)
    refund_delay_mean_s: float = _key(7_200.0, 0.0)
    payout_ppm: int = _key(900_000, 0, 1_000_000)
    payout_hour: float = _key(23.5, 0.0, 24.0)


@dataclass(frozen=True)
class Crypto:
    buy: float = _share(0.45)  # shares of crypto arrivals
    sell: float = _share(0.30)
    withdraw: float = _share(0.10)
    deposit: float = _share(0.15)
    btc_share: float = _share(0.50)  # shares of coins; USDC the rest
    eth_share: float = _share(0.35)
    btc_price_usd: float = _key(60_000.0, 0.0, 1e9, low_open=True)
    eth_price_usd: float = _key(3_000.0, 0.0, 1e9, low_open=True)
    usdc_price_usd: float = _key(1.0, 0.0, 1e9, low_open=True)
    daily_volatility: float = _key(0.025, 0.0, 1.0)  # BTC and ETH; USDC is pegged
    crash_day: int = _key(-1, -1)  # -1: no crash
    crash_hour: float = _key(14.0, 0.0, 24.0)
    crash_drop: float = _key(0.0, 0.0, 0.99)  # share of the price lost
    crash_duration_s: float = _key(3_600.0, 0.0, 86_400.0, low_open=True)
    median_minor: int = _key(10_000, 1)  # fiat value of a buy/sell/withdraw/deposit
    sigma: float = _key(1.0, 0.0, 5.0)
    btc_block_mean_s: float = _key(600.0, 0.0, 1e6, low_open=True)
    btc_confirmations: int = _key(6, 1, 1_000)
    eth_finality_s: float = _key(768.0, 0.0, 1e6, low_open=True)
    withdraw_fail_share: float = _share(0.02)
    withdraw_timeout_s: float = _key(172_800.0, 1.0)
    usd_to_eur_ppm: int = _key(920_000, 1)
    wallet_funding_minor: int = _key(50_000, 1)  # fiat value of each wallet's first deposit


@dataclass(frozen=True)
class Clients:
    retry_share: float = _share(0.01)  # sent again, same id and fields, in the next tick
    bad_share: float = _share(0.005)  # unknown account, over the balance, wrong currency


SECTIONS = {
    "scenario": ScenarioInfo, "population": Population, "time": Time, "rate": Rate,
    "mix": Mix, "amounts": Amounts, "merchant": Merchant, "crypto": Crypto, "clients": Clients,
}


@dataclass(frozen=True)
class Scenario:
    scenario: ScenarioInfo = ScenarioInfo()
    population: Population = Population()
    time: Time = Time()
    rate: Rate = Rate()
    bursts: tuple[Burst, ...] = ()
    mix: Mix = Mix()
    amounts: Amounts = Amounts()
    merchant: Merchant = Merchant()
    crypto: Crypto = Crypto()
    clients: Clients = Clients()

    @property
    def name(self) -> str:
        return self.scenario.name

    def replace(self, **sections: dict) -> "Scenario":
        """A copy with some keys of some sections changed: replace(time={"days": 1})."""
        changed = {}
        for section, values in sections.items():
            if section == "bursts":
                changed[section] = tuple(values)
            else:
                changed[section] = dataclasses.replace(getattr(self, section), **values)
        result = dataclasses.replace(self, **changed)
        check_scenario(result, result.name)
        return result


# --- strict reading ------------------------------------------------------------------------
def _refuse(label: str, message: str):
    raise InputRefused(f"scenario {label}: {message}")


def _typed(label: str, path: str, value, kind):
    """`value` as `kind` (int, float, str, bool, tuple[int, ...], tuple[tuple[float,...]])."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        if not isinstance(value, list):
            _refuse(label, f"{path} must be an array, not {type(value).__name__}")
        args = typing.get_args(kind)
        if args[-1] is not Ellipsis and len(value) != len(args):
            _refuse(label, f"{path} must have {len(args)} values, not {len(value)}")
        inner = args[0]
        return tuple(_typed(label, f"{path}[{i}]", v, inner) for i, v in enumerate(value))
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    _refuse(label, f"{path} must be {kind.__name__}, not {type(value).__name__} ({value!r})")


def _check_range(label: str, path: str, value, meta) -> None:
    if isinstance(value, float) and not math.isfinite(value):  # TOML allows nan and inf
        _refuse(label, f"{path}(={value}) must be a finite number")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value <= low if meta.get("low_open") else value < low):
        rule = f"> {low}" if meta.get("low_open") else f">= {low}"
        _refuse(label, f"{path}(={value}) must be {rule}")
    if high is not None and value > high:
        _refuse(label, f"{path}(={value}) must be <= {high}")


def _section(label: str, name: str, cls, table) -> object:
    if not isinstance(table, dict):
        _refuse(label, f"{name} must be a table, not {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        path = f"{name}.{key}"
        if key not in known:
            _refuse(label, f"unknown key {path}")
        values[key] = _typed(label, path, value, hints[key])
        _check_range(label, path, values[key], known[key].metadata)
    return cls(**values)


def parse_scenario(data: dict, label: str) -> Scenario:
    """A `Scenario` from a parsed TOML document; refuses unknown or bad keys by path."""
    sections = {}
    for name, table in data.items():
        if name == "bursts":
            if not isinstance(table, list):
                _refuse(label, "bursts must be an array of tables ([[bursts]])")
            sections[name] = tuple(_section(label, f"bursts[{i}]", Burst, t)
                                   for i, t in enumerate(table))
        elif name in SECTIONS:
            sections[name] = _section(label, name, SECTIONS[name], table)
        else:
            _refuse(label, f"unknown section {name}")
    if "name" not in data.get("scenario", {}):
        info = sections.get("scenario", ScenarioInfo())
        sections["scenario"] = dataclasses.replace(info, name=label)
    scenario = Scenario(**sections)
    check_scenario(scenario, label)
    return scenario


def check_scenario(s: Scenario, label: str) -> None:
    """Rules that tie keys together (ranges of single keys are checked while reading)."""
    mix_total = sum(getattr(s.mix, f.name) for f in dataclasses.fields(Mix))
    if abs(mix_total - 1.0) > SHARE_TOLERANCE:
        _refuse(label, f"mix shares sum to {mix_total}, must sum to 1")
    crypto_total = s.crypto.buy + s.crypto.sell + s.crypto.withdraw + s.crypto.deposit
    if abs(crypto_total - 1.0) > SHARE_TOLERANCE:
        _refuse(label, f"crypto.buy+sell+withdraw+deposit(={crypto_total}) must be 1")
    if s.crypto.btc_share + s.crypto.eth_share > 1.0 + SHARE_TOLERANCE:
        _refuse(label, "crypto.btc_share + crypto.eth_share must be <= 1")
    if s.merchant.capture_share + s.merchant.void_share > 1.0 + SHARE_TOLERANCE:
        _refuse(label, "merchant.capture_share + merchant.void_share must be <= 1")
    if max(s.rate.day_level, s.rate.peak_level) <= 0.0 and (
            s.rate.night_level <= 0.0 or s.rate.night_end_hour <= 0.0):
        _refuse(label, "rate levels (night_level, day_level, peak_level) must not all be 0")
    for i, (start, stop) in enumerate(s.rate.peaks):
        if not 0.0 <= start < stop <= 24.0:
            _refuse(label, f"rate.peaks[{i}](={[start, stop]}) must be 0 <= from < to <= 24")
    for i, burst in enumerate(s.bursts):
        if burst.kind not in BURST_KINDS:
            _refuse(label, f"bursts[{i}].kind(={burst.kind!r}) must be one of {BURST_KINDS}")
        if burst.day >= s.time.days:
            _refuse(label, f"bursts[{i}].day(={burst.day}) must be < time.days")
    for i, day in enumerate(s.time.holidays):
        if not 0 <= day < s.time.days:
            _refuse(label, f"time.holidays[{i}](={day}) must be in [0, time.days)")
    for key in ("merchant.authorization_timeout_s", "crypto.withdraw_timeout_s"):
        section, name = key.split(".")
        if getattr(getattr(s, section), name) <= 2 * s.time.tick_s:
            _refuse(label, f"{key} must be > 2 * time.tick_s")
    if s.merchant.capture_delay_mean_s * 8 >= s.merchant.authorization_timeout_s:
        _refuse(label, "merchant.capture_delay_mean_s * 8 must be < authorization_timeout_s")


def scenario_names() -> list[str]:
    """Names of the shipped scenarios (files in SCENARIO_DIR), sorted."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name, or any scenario file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = SCENARIO_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise InputRefused(f"scenario {name_or_path}: no such scenario; known: "
                               f"{', '.join(scenario_names())}")
    label = path.stem
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise InputRefused(f"scenario {label}: cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise InputRefused(f"scenario {label}: not valid TOML: {error}") from None
    return parse_scenario(data, label)


# --- resizing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resize:
    """Size overrides that apply to any scenario, keeping its mix and its curves (None: keep).

    - `users`: the user count; the arrival rate scales with it (rate.scale times users over
      the scenario's users), so each user pays as often as before;
    - `scale`: the same by a factor: users = round(scale * the scenario's users), rate x scale
      (give `users` or `scale`, not both);
    - `days`: modelled days; bursts, holidays and a crypto crash past the last day are dropped;
    - `epochs`: traffic epochs over the days: time.tick_s = days * 86400 / epochs;
    - `epoch_seconds`: model seconds per traffic epoch (time.tick_s); give `epochs` or
      `epoch_seconds`, not both.
    """

    users: int | None = None
    scale: float | None = None
    days: int | None = None
    epochs: int | None = None
    epoch_seconds: float | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))


def resize(scenario: Scenario, size: Resize) -> Scenario:
    """`scenario` at the sizes of `size` (class doc); refuses nonsense with InputRefused naming
    the override and the rule."""
    label = scenario.name
    users, rate_factor = _resized_users(label, scenario.population.users, size)
    days = scenario.time.days if size.days is None else size.days
    _check_override(label, "days", days, 1, 3_650)
    changes: dict = {"population": {"users": users},
                     "rate": {"scale": scenario.rate.scale * rate_factor},
                     "time": {"days": days, "tick_s": _resized_tick_s(label, scenario, days, size),
                              "holidays": tuple(d for d in scenario.time.holidays if d < days)},
                     "bursts": tuple(b for b in scenario.bursts if b.day < days)}
    if scenario.crypto.crash_day >= days:
        changes["crypto"] = {"crash_day": -1}
    _check_override(label, "rate.scale after resizing", changes["rate"]["scale"], 1e-12, 1e9)
    try:
        return scenario.replace(**changes)
    except InputRefused as error:
        raise InputRefused(f"{error} (after resizing to {_resize_text(size)})") from None


def _resized_users(label: str, users: int, size: Resize) -> tuple[int, float]:
    """(user count, rate factor) of a resize."""
    if size.users is not None and size.scale is not None:
        _refuse(label, f"size overrides users(={size.users}) and scale(={size.scale}): give one")
    if size.scale is not None:
        _check_override(label, "scale", size.scale, 1e-9, 1e6)
        resized = round(users * size.scale)
        if resized < 2:
            _refuse(label, f"size override scale(={size.scale}) leaves {resized} users; need >= 2")
        return resized, size.scale
    if size.users is not None:
        _check_override(label, "users", size.users, 2, 2**31)
        return size.users, size.users / users
    return users, 1.0


def _resized_tick_s(label: str, scenario: Scenario, days: int, size: Resize) -> float:
    if size.epochs is not None and size.epoch_seconds is not None:
        _refuse(label, f"size overrides epochs(={size.epochs}) and epoch_seconds"
                       f"(={size.epoch_seconds}): give one (epochs = days * 86400 / epoch_seconds)")
    if size.epochs is not None:
        _check_override(label, "epochs", size.epochs, days, days * SECONDS_PER_DAY,
                        rule=f"in [days(={days}), days * 86400] (an epoch is at most a day)")
        return days * SECONDS_PER_DAY / size.epochs
    if size.epoch_seconds is not None:
        _check_override(label, "epoch_seconds", size.epoch_seconds, 1.0, SECONDS_PER_DAY)
        return float(size.epoch_seconds)
    return scenario.time.tick_s


def _check_override(label: str, name: str, value, low, high, rule: str | None = None) -> None:
    if isinstance(value, float) and not math.isfinite(value) or not low <= value <= high:
        _refuse(label, f"size override {name}(={value}) must be {rule or f'in [{low}, {high}]'}")


def _resize_text(size: Resize) -> str:
    return ", ".join(f"{f.name}={getattr(size, f.name)}" for f in dataclasses.fields(size)
                     if getattr(size, f.name) is not None)
