# ESP32's `machine`, as far as the firmware and the installer's tools use it. The world outside
# the chip is the host's (board.py and its parts): it drives input pins and ADC voltages, runs the watchdog's
# clock, keeps RTC memory while the power is on, and wakes the board from deep sleep.
import sys
import time
from binascii import hexlify

import _board
import i2c_bus
import spi_bus

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_RTC_MEMORY_MAX = 2048  # bytes of RTC slow memory MicroPython gives to RTC.memory() on ESP32

# The host's functions, looked up on the _board proxy once: each lookup makes a new proxy object on the
# heap, and a MemoryError raised inside the VM's JavaScript glue leaves the VM spinning instead of
# raising. On a board these are C that allocates nothing, so they work on a full heap: so must these.
_host_reset = _board.reset
_host_lightsleep = _board.lightsleep
_host_deepsleep = _board.deepsleep
_host_pin_output = _board.pin_output
_host_pin_input = _board.pin_input
_host_adc_input = _board.adc_input
_host_wdt_feed = _board.wdt_feed
_host_timer_start = _board.timer_start
_host_timer_stop = _board.timer_stop
_host_rtc_memory_read = _board.rtc_memory_read
_host_rtc_memory_write = _board.rtc_memory_write


def reset():
    _host_reset()  # the host restarts the VM: this call does not return


def soft_reset():
    raise SystemExit


def reset_cause():
    return _board.reset_cause


def unique_id():
    return bytes.fromhex(_board.unique_id)


def freq():
    return 160_000_000


# esp32.wake_on_ext0(): the GPIO whose level wakes the CPU from light sleep (-1: none), and that level.
_ext0_pin = -1
_ext0_level = 1
# In light sleep: a pin's edge meanwhile runs no IRQ handler (_edge).
_asleep = False


def lightsleep(time_ms=None):
    """Stop the CPU for `time_ms` (ports/esp32/modmachine.c: a timer wakes it, esp_light_sleep_start): no
    Python runs meanwhile, no task, no IRQ handler. Without `time_ms` nothing here wakes it but the
    watchdog, or the ext0 pin. The world goes on: the host's messages are applied as they come, so a
    radio chip's model hears its frames, but an edge they make is missed (the ESP32's GPIOs are not
    clocked), only the level stays. With esp32.wake_on_ext0() set, the pin at its level wakes the CPU
    (esp_sleep_enable_ext0_wakeup, as machine_sleep_helper sets it for light sleep too). The chips'
    own timers (a radio's TX-done) wait for the wake: use it for waits in which they have nothing to do."""
    global _asleep
    _asleep = True
    try:
        if _ext0_pin < 0:
            _host_lightsleep(-1 if time_ms is None else max(time_ms, 0), False)
            return
        pad = _pads[_ext0_pin]  # wake_on_ext0() took a Pin, which made it
        pad.rtc = False  # the RTC IO reads the level the wake watches
        start = time.ticks_ms()
        while _level(_ext0_pin, _host_pin_input(_ext0_pin)) != _ext0_level:
            left = -1
            if time_ms is not None:
                left = time_ms - time.ticks_diff(time.ticks_ms(), start)
                if left <= 0:
                    break
            _host_lightsleep(left, True)  # returns early once a message of the host is applied
        # ESP-IDF made the pad an RTC IO for the wake and leaves it so: it reads 0 and takes no IRQ until
        # Pin.init() with a mode makes it digital again (machine_pin.c calls rtc_gpio_deinit then; ESP-IDF's
        # Sleep Modes guide: "before using these pads as digital GPIOs, ... rtc_gpio_deinit()").
        pad.rtc = True
    finally:
        _asleep = False


def deepsleep(time_ms=0):
    """Power down until `time_ms` have passed (0: until reset); the board then boots with DEEPSLEEP_RESET.
    The GPIOs' outputs go with the power: only a held pad keeps its level (`_kept_level`)."""
    for pin in _pads:
        if _driven_by_board(_pads[pin]) and _kept_level(pin) is None:
            _host_pin_output(pin, -1)  # it floats while the chip sleeps
    _host_deepsleep(time_ms)  # the host ends the VM: this call does not return


# esp32.gpio_deep_sleep_hold(): whether held digital pads keep their state in deep sleep.
_deep_sleep_hold = False


def _kept_level(pin):
    """The level the pad keeps driving through deep sleep, or None if it floats. ESP-IDF's gpio.h
    (gpio_hold_en): a digital GPIO's hold does not last through deep sleep unless
    gpio_deep_sleep_hold_en() is called too; an RTC GPIO's does by itself. The model does not tell
    RTC pads apart and asks both of every pad (stricter: on a board an RTC GPIO, e.g. ESP32 GPIO 0,
    2, 4, 12-15, 25-27, 32-39 or ESP32-S3 GPIO 0-21, keeps its level held alone)."""
    pad = _pads.get(pin)
    if pad is None or pad.held is None or pad.held < 0 or not _deep_sleep_hold:
        return None
    return pad.held


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if not isinstance(id, int) or not 0 <= id < 49:
            raise ValueError("invalid pin")
        self._id = id
        _pads.setdefault(id, _Pad())
        self.init(mode, pull, value=value, drive=drive, hold=hold)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        """As ports/esp32/machine_pin.c (machine_pin_obj_init_helper) does it: value, then mode and pull,
        then `hold`: given, it releases the pad (gpio_hold_dis: what was set meanwhile shows), and True
        latches it again (gpio_hold_en). A held pad keeps its output whatever is set until released."""
        pad = _pads[self._id]
        if value is not None:
            pad.latch = 1 if value else 0
        if pull != -1:
            pad.pull = pull
        if mode != -1:
            pad.mode = mode
            pad.rtc = False  # a digital GPIO again
        if hold is not None:
            pad.held = None
            if hold:
                pad.held = pad.latch if _driven_by_board(pad) else -1
        _report_output(self._id)

    def value(self, x=None):
        if x is None:
            return _level(self._id, _host_pin_input(self._id))
        _pads[self._id].latch = 1 if x else 0
        _report_output(self._id)
        return None

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, wake=None, **extra):
        """Call handler(pin) on the edges in `trigger` of the level the host drives."""
        if extra:  # ports/esp32/machine_pin.c takes handler, trigger, wake: no `hard`, IRQs are soft only
            raise TypeError("extra keyword arguments given")
        pad = _pads[self._id]
        pad.pin = self
        pad.handler = handler
        pad.trigger = trigger if handler is not None else 0
        return _PinIRQ(pad)

    def __repr__(self):
        return f"Pin({self._id})"


class _Pad:
    """The state of one GPIO, shared by every Pin object of it, as the hardware has one pad."""

    def __init__(self):
        self.mode = None  # unconfigured: an input
        self.pull = None
        self.latch = 0
        self.handler = None
        self.trigger = 0
        self.pin = None  # the Pin its IRQ handler is given
        self.held = None  # pad hold: the level latched (-1: not driven), None when not held
        self.rtc = False  # left an RTC IO by a wake from light sleep (lightsleep): reads 0, no IRQ


class _PinIRQ:
    def __init__(self, pad):
        self._pad = pad

    def trigger(self, trigger=None):
        if trigger is not None:
            self._pad.trigger = trigger
        return self._pad.trigger


_pads = {}


def _driven_by_board(pad):
    if pad.held is not None:
        return pad.held >= 0
    return pad.mode == Pin.OUT or (pad.mode == Pin.OPEN_DRAIN and pad.latch == 0)


def _output(pad):
    """The level the pad drives (if `_driven_by_board`): the latched one while held."""
    return pad.latch if pad.held is None else pad.held


def _level(pin, host_level):
    """What the pad reads, given the level the host drives on it (-1: none)."""
    pad = _pads.get(pin) or _Pad()
    if _driven_by_board(pad):
        return _output(pad)
    if pad.rtc:
        return 0
    chip_level = spi_bus.driven(pin)
    if chip_level is not None:  # a chip's output (an IRQ line) wins over the host's
        return chip_level
    if host_level >= 0:
        return host_level
    return 1 if pad.pull == Pin.PULL_UP else 0  # a floating input reads low


def _report_output(pin):
    pad = _pads[pin]
    _host_pin_output(pin, _output(pad) if _driven_by_board(pad) else -1)
    spi_bus.line(pin, _level(pin, _host_pin_input(pin)))  # a chip select, or a chip's reset line


def _host_changed_pin(pin, old, new):
    # The handler of the host's pin_level messages: run the IRQ handler of a matching edge.
    _edge(pin, _level(pin, old), _level(pin, new))


def _chip_changed_pin(pin, old, new):
    # A chip on a bus changed the level it drives on `pin` (None: released).
    host = _host_pin_input(pin)
    pad = _pads.get(pin) or _Pad()
    if _driven_by_board(pad):
        return
    floating = host if host >= 0 else 1 if pad.pull == Pin.PULL_UP else 0
    _edge(pin, floating if old is None else old, floating if new is None else new)


def _edge(pin, before, after):
    pad = _pads.get(pin)
    if pad is None or pad.handler is None or pad.rtc or _asleep:
        return
    edge = Pin.IRQ_RISING if after > before else Pin.IRQ_FALLING if after < before else 0
    if edge & pad.trigger:
        try:
            pad.handler(pad.pin)
        except Exception as e:  # as MicroPython reports an error in a scheduled IRQ handler
            print("Uncaught exception in IRQ callback handler")
            sys.print_exception(e)


_board.on_control("pin_level", _host_changed_pin)
spi_bus.on_drive = _chip_changed_pin
# The chips wired at power-on; here, since the chips' modules import the buses' modules.
i2c_bus.configure(_board.last_control("i2c_chips"), booting=True)
spi_bus.configure(_board.last_control("spi_chips"), booting=True)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    # Full-scale voltage of each attenuation (ESP-IDF's figures for the ESP32), in microvolts.
    _FULL_SCALE_UV = (1_100_000, 1_500_000, 2_200_000, 3_900_000)

    def __init__(self, pin, *, atten=None):
        if not isinstance(pin, Pin):
            raise ValueError("expecting a pin")
        self._pin = pin._id
        self._atten = self.ATTN_0DB
        if atten is not None:
            self.atten(atten)

    def atten(self, atten):
        if atten not in (0, 1, 2, 3):
            raise ValueError("invalid atten")
        self._atten = atten

    def read_uv(self):
        """The voltage the host set on the pin, in microvolts, clipped to the attenuation's range."""
        return max(0, min(_host_adc_input(self._pin), self._FULL_SCALE_UV[self._atten]))

    def read_u16(self):
        return self.read_uv() * 65535 // self._FULL_SCALE_UV[self._atten]

    def read(self):
        return self.read_uv() * 4095 // self._FULL_SCALE_UV[self._atten]


class WDT:
    """The watchdog: reset the board unless fed within `timeout` ms. It cannot be stopped."""

    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError(f"WDT({id}) doesn't exist")
        if timeout < 1:
            raise ValueError("WDT timeout too short")
        _board.wdt(timeout)  # the host's clock runs it, and a soft reset leaves it running

    def feed(self):
        _host_wdt_feed()


class Timer:
    """A hardware timer: its callback runs at `period` ms (once, or every period) whatever Python does."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id, **kwargs):
        self._id = id
        self._handle = -1
        if kwargs:
            self.init(**kwargs)

    def init(self, *, mode=PERIODIC, period=-1, freq=-1, callback=None):
        self.deinit()
        if freq > 0:
            period = 1000 // freq
        if period < 1:
            raise ValueError("period must be positive")

        def fire():
            if mode == Timer.ONE_SHOT:
                self._handle = -1
            if callback is not None:
                callback(self)

        self._handle = _host_timer_start(period, mode == Timer.PERIODIC, fire)

    def deinit(self):
        if self._handle >= 0:
            _host_timer_stop(self._handle)
            self._handle = -1


class RTC:
    def __init__(self, id=0):
        pass

    def memory(self, data=None):
        """RTC slow memory: kept through resets and deep sleep, lost when the power goes."""
        if data is None:
            return bytes.fromhex(_host_rtc_memory_read())
        if isinstance(data, str):
            data = data.encode()
        if len(data) > _RTC_MEMORY_MAX:
            raise ValueError("buffer too long")
        _host_rtc_memory_write(hexlify(data).decode())
        return None


_ENODEV = 19  # what ESP32's I2C raises when nothing ACKs (ESP_FAIL)
_ETIMEDOUT = 116  # and at its timeout (ESP_ERR_TIMEOUT: MP_ETIMEDOUT, newlib's number on the ESP32)
_I2C_DEFAULT_PINS = ((18, 19), (25, 26))  # (scl, sda) of I2C(0) and I2C(1) on ESP32


class SoftI2C:
    """An I2C controller on two GPIOs; its transfers reach the chips the host wired to those pins."""

    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        self.init(scl, sda, freq=freq, timeout=timeout)

    def init(self, scl, sda, *, freq=400000, timeout=50000):
        self._scl = scl._id if isinstance(scl, Pin) else Pin(scl)._id
        self._sda = sda._id if isinstance(sda, Pin) else Pin(sda)._id
        self._timeout_us = timeout

    def _chip(self, addr):
        chip = i2c_bus.device(self._sda, self._scl, addr)
        if chip is None:
            raise OSError(_ENODEV)
        if chip.stretch_us() > self._timeout_us:
            raise OSError(_ETIMEDOUT)  # the chip held SCL low longer than the bus waits
        return chip

    def scan(self):
        return i2c_bus.addresses(self._sda, self._scl)

    def writeto(self, addr, buf, stop=True):
        if not self._chip(addr).write(bytes(buf)):
            raise OSError(_ENODEV)
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        return self.writeto(addr, b"".join(bytes(b) for b in vector), stop)

    def readfrom_into(self, addr, buf, stop=True):
        data = self._chip(addr).read(len(buf))
        if data is None:
            raise OSError(_ENODEV)
        buf[:] = data

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf, stop)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self.writeto(addr, memaddr.to_bytes(addrsize // 8, "big") + bytes(buf))

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        self.writeto(addr, memaddr.to_bytes(addrsize // 8, "big"), False)
        self.readfrom_into(addr, buf)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize=addrsize)
        return bytes(buf)


class I2C(SoftI2C):
    """ESP32's hardware I2C: `I2C(id, *, scl, sda, freq, timeout)`, id 0 or 1, pins default to the port's."""

    def __init__(self, id, *, scl=None, sda=None, freq=400000, timeout=50000):
        if id not in (0, 1):
            raise ValueError(f"I2C({id}) doesn't exist")
        default_scl, default_sda = _I2C_DEFAULT_PINS[id]
        super().__init__(
            default_scl if scl is None else scl, default_sda if sda is None else sda, freq=freq, timeout=timeout
        )


_SPI_DEFAULT_PINS = {1: (14, 13, 12), 2: (18, 23, 19)}  # (sck, mosi, miso) of HSPI and VSPI on ESP32


def _pin_id(pin):
    return pin._id if isinstance(pin, Pin) else Pin(pin)._id


def _bit_reversed(byte):
    out = 0
    for _ in range(8):
        out = out << 1 | byte & 1
        byte >>= 1
    return out


class SPI:
    """ESP32's hardware SPI, `SPI(id, baudrate, *, polarity, phase, bits, firstbit, sck, mosi, miso)`,
    id 1 (HSPI) or 2 (VSPI), pins default to the port's. Full duplex: every byte written clocks one in
    from the chips the host wired to the pins (spi_bus.py) whose chip select the board holds low."""

    MSB = 0
    LSB = 1

    def __init__(
        self, id, baudrate=500000, *, polarity=0, phase=0, bits=8, firstbit=MSB, sck=None, mosi=None, miso=None
    ):
        if id not in _SPI_DEFAULT_PINS:
            raise ValueError("SPI ID must be either HSPI(1) or VSPI(2)")
        default_sck, default_mosi, default_miso = _SPI_DEFAULT_PINS[id]
        self._config = [baudrate, polarity, phase, bits, firstbit, default_sck, default_mosi, default_miso]
        self.init(sck=sck, mosi=mosi, miso=miso)

    def init(
        self, baudrate=None, *, polarity=None, phase=None, bits=None, firstbit=None, sck=None, mosi=None, miso=None
    ):
        """Change the settings given; the others stay as they were."""
        for i, new in enumerate((baudrate, polarity, phase, bits, firstbit, sck, mosi, miso)):
            if new is not None:
                self._config[i] = new if i < 5 else _pin_id(new)
        self._on = True

    def deinit(self):
        self._on = False

    def _transfer(self, out, into):
        if not self._on:
            raise OSError("transfer on deinitialized SPI")
        config = self._config
        sck, mosi, miso = config[5], config[6], config[7]
        lsb_first = config[4] == self.LSB
        if lsb_first:
            out = _bit_reversed(out) if isinstance(out, int) else bytes(_bit_reversed(b) for b in out)
        idle = 0xFF if _level(miso, _host_pin_input(miso)) else 0x00  # what a MISO nobody drives reads
        spi_bus.transfer(sck, mosi, miso, config[0], config[1], config[2], config[3], out, into, idle)
        if lsb_first and into is not None:
            for n, b in enumerate(into):
                into[n] = _bit_reversed(b)

    def write(self, buf):
        self._transfer(buf, None)

    def read(self, nbytes, write=0x00):
        buf = bytearray(nbytes)
        self._transfer(write, buf)
        return bytes(buf)

    def readinto(self, buf, write=0x00):
        self._transfer(write, buf)

    def write_readinto(self, write_buf, read_buf):
        if len(write_buf) != len(read_buf):
            raise ValueError("buffers must be the same length")
        self._transfer(write_buf, read_buf)
