import pytest

from torchbridge.errors import ConfigError
from torchbridge.units import PerDevice, parse_bytes, parse_duration, parse_rate


@pytest.mark.parametrize(("text", "seconds"), [("5ms", 0.005), ("1.5s", 1.5), (2, 2.0),
                                               ("250us", 250e-6), ("40 ms", 0.04)])
def test_durations_read_with_their_units(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "size"), [("512MB", 512 * 10**6), ("1GiB", 2**30),
                                            (1024, 1024), ("1.5KiB", 1536)])
def test_sizes_distinguish_decimal_and_binary_units(text: object, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize("bad", ["5 parsecs", "-3ms", "0ms", "fast", True, None, "nan"])
def test_bad_durations_say_what_to_write(bad: object) -> None:
    with pytest.raises(ConfigError, match="p99"):
        parse_duration(bad, "p99")


def test_rates_accept_thousands() -> None:
    assert parse_rate("2k/s") == 2000


def test_per_device_budget_falls_back_from_index_to_kind() -> None:
    budget = PerDevice.parse({"cuda": "8ms", "cpu": "40ms"}, parse_duration)
    assert budget.for_device("cuda:1") == pytest.approx(0.008)
    assert budget.for_device("mps") is None


def test_per_device_budget_rejects_unknown_devices() -> None:
    with pytest.raises(ConfigError, match="tpu"):
        PerDevice.parse({"tpu": "1ms"}, parse_duration)
