# What the radio chips' models (sx127x_chip.py, sx126x_chip.py) share: their timers on the board's
# clock, what they tell the host's radio medium (listening, idle, a frame sent), the frames the medium
# delivers to every radio chip on the board's SPI buses, and the time on air of a LoRa packet (SX1276
# DS §4.1.1.6-7; SX1261/2 DS §6.1.4 gives the same for SF7-12).
from binascii import unhexlify

import _board
import spi_bus

# Looked up on the _board proxy once, as machine.py's: a lookup allocates, and a MemoryError in the VM's
# JavaScript glue leaves it spinning, where the board's C works on a full heap.
_host_timer_start = _board.timer_start
_host_timer_stop = _board.timer_stop
_host_radio_receiving = _board.radio_receiving
_host_radio_transmitting = _board.radio_transmitting
_host_radio_idle = _board.radio_idle


def time_on_air_us(length, sf, bw_hz, cr, preamble, crc, implicit, ldro):
    t_sym = (1 << sf) * 1_000_000 // bw_hz
    bits = 8 * length - 4 * sf + 28 + 16 * crc - 20 * implicit
    step = 4 * (sf - 2 * ldro)
    n = 8 + max((bits + step - 1) // step * cr, 0)
    return (4 * preamble + 17) * t_sym // 4 + n * t_sym


class RadioChip(spi_bus.Chip):
    timer = -1  # a TX-done or RX timeout on the board's clock
    on_air = False  # what the medium was last told: receiving (True), idle or transmitting

    def hear(self, payload, rssi_dbm, snr_x4, crc_ok):
        """A frame the medium delivers: kept if the modem is receiving."""

    def follow_power(self):
        """At configure: a chip powered again starts from its power-on reset; one unpowered stops
        its timer and leaves the air."""
        if self.answering and not self.powered:
            self.reset()
        if not self.answering and self.powered:
            self.stop_timer()
            self.tell_idle()
        self.powered = self.answering

    def start_timer(self, us, then):
        self.stop_timer()
        self.timer = _host_timer_start(max((us + 999) // 1000, 1), False, then)

    def stop_timer(self):
        if self.timer >= 0:
            _host_timer_stop(self.timer)
            self.timer = -1

    def tell_receiving(self, settings):
        self.on_air = True
        _host_radio_receiving(settings)

    def tell_transmitting(self, payload_hex, settings):
        self.tell_idle()  # the medium times the frame itself: no idle to tell at its end
        _host_radio_transmitting(payload_hex, settings)

    def tell_idle(self):
        if self.on_air is not False:
            self.on_air = False
            _host_radio_idle()


def host_frame(payload_hex, rssi_dbm, snr_x4, crc_ok):
    """The handler of the host's radio_frame messages: every radio chip on the board's buses hears it."""
    payload = unhexlify(payload_hex)
    for model in spi_bus.models():
        if isinstance(model, RadioChip):
            model.hear(payload, rssi_dbm, snr_x4, crc_ok)


_board.on_control("radio_frame", host_frame)
