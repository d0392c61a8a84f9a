// The virtual board's microcontroller: the real MicroPython VM (its WebAssembly port) booting like
// an ESP32, its console on stdin/stdout, which the host (console.py) connects to a pty. A reset ends
// this process with a code that tells the host (power.py) how to boot the next one: a fresh VM over
// the same flash.
//
//   node mcu.mjs --flash DIR --state DIR [--reset-cause N] [--repl friendly|raw] [--soft-reboot]
//                [--unique-id HEX] [--world LINES] [--control FD] [--events FD] [--mcu esp32|esp32s3|none]
//                [--console uart|usb]
//
// Beside the console, two pipes link the board to the host (board.py and its parts), which plays
// the world around the chip; messages.py has every message that travels on them, as one line of
// JSON whose "type" names its kind. --control brings the control messages (pin_level, adc_voltage,
// i2c_chips, spi_chips, radio_frame), each answered by an "ack" event with its "seq" once applied;
// --world holds the lines of the control messages that describe the world at power-on. --events
// carries what the host must know (ack, wdt_start, wdt_feed, deep_sleep, pin_output,
// radio_receiving, radio_idle, radio_transmitting). A main.py that called asyncio.run() holds the
// console until its task ends or Ctrl-C: the REPL starts then, as on a board.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

import { hostAes } from "./aes.mjs";
import { hostFlash } from "./flash.mjs";
import { hostNvs } from "./nvs.mjs";

// Mirrored in mcu.py.
const EXIT_SOFT_REBOOT_FRIENDLY = 40;
const EXIT_SOFT_REBOOT_RAW = 41;
const EXIT_MACHINE_RESET = 42;
const EXIT_NOT_INSTALLED = 43;
const EXIT_DEEPSLEEP = 44;

const RAW_REPL_BANNER = "raw REPL; CTRL-B to exit\r\n";
const FRIENDLY_REPL_BANNER = 'Type "help()" for more information.\r\n';
const RAW_PASTE_REQUEST = [0x05, 0x41, 0x01]; // Ctrl-E 'A' Ctrl-A
const RAW_PASTE_WINDOW = 1024;

const { values: options } = parseArgs({
  options: {
    flash: { type: "string" },
    state: { type: "string" },
    world: { type: "string", default: "" },
    control: { type: "string" },
    events: { type: "string" },
    "reset-cause": { type: "string", default: "1" },
    repl: { type: "string", default: "friendly" },
    "soft-reboot": { type: "boolean", default: false },
    "unique-id": { type: "string", default: "240ac4000001" },
    mcu: { type: "string", default: "esp32" }, // the profile's MCU, which sets the Python heap: "esp32", "esp32s3", "none"
    console: { type: "string", default: "uart" }, // the profile's console, which feeds main.py's input: "uart", "usb"
    vm: { type: "string", default: "" }, // the VM package's micropython.mjs, where mcu.py found it
  },
});

process.on("uncaughtException", (error) => {
  // Node would print the offending line of the minified VM: one line of the message is enough.
  fs.writeSync(2, `virtual board: ${error.stack?.split("\n").slice(0, 3).join("\n") ?? error}\n`);
  process.exit(1);
});

let loadMicroPython;
try {
  const vm = options.vm ? pathToFileURL(options.vm).href : "@micropython/micropython-webassembly-pyscript";
  ({ loadMicroPython } = await import(vm));
} catch {
  fs.writeSync(2, "virtual board: the MicroPython VM is missing: run `npm ci` in the simulator's virtual_board folder\n");
  process.exit(EXIT_NOT_INSTALLED);
}

// The console: what the VM prints, batched into few writes; fs.writeSync keeps the order with exit().
const console_ = {
  pending: [],
  muted: false,
  tail: "",
  repl: options.repl,
  swallow: "", // output to drop if it comes next
  put(bytes) {
    for (const byte of bytes) this.track(byte);
    if (this.muted) return;
    while (this.swallow && bytes.length && bytes[0] === this.swallow.charCodeAt(0)) {
      this.swallow = this.swallow.slice(1);
      bytes = bytes.slice(1);
    }
    this.swallow = bytes.length ? "" : this.swallow;
    this.pending.push(...bytes);
    // Flush soon, or now if Python is busy printing and the event loop will not come back soon.
    if (this.pending.length === bytes.length) setImmediate(() => this.flush());
    else if (this.pending.length >= 4096) this.flush();
  },
  // The REPL's mode decides what a soft reboot runs; its banners say when it changes.
  track(byte) {
    this.tail = (this.tail + String.fromCharCode(byte)).slice(-40);
    if (this.tail.endsWith(RAW_REPL_BANNER)) this.repl = "raw";
    else if (this.tail.endsWith(FRIENDLY_REPL_BANNER)) this.repl = "friendly";
  },
  flush() {
    if (this.pending.length) fs.writeSync(1, Buffer.from(this.pending));
    this.pending = [];
  },
};

// The VM ends with this process; power.py boots the next one as `code` says.
function end(code) {
  console_.flush();
  process.exit(code);
}

function softReboot() {
  end(console_.repl === "raw" ? EXIT_SOFT_REBOOT_RAW : EXIT_SOFT_REBOOT_FRIENDLY);
}

// The Python heap of MicroPython's ESP32 port (v1.27). ports/esp32/mpconfigport.h starts it at
// MICROPY_GC_INITIAL_HEAP_SIZE, 56 KiB on the ESP32 and 64 KiB on the ESP32-S3, and (MICROPY_GC_SPLIT_HEAP_AUTO)
// py/gc.c's gc_try_add_heap adds an area that doubles the total whenever the ESP-IDF heap has a block
// that large; the comment there sizes the initial heap so the port "can grow the heap once (double it)".
// We model the stricter case: one fixed heap of the initial size grown once, 112 KiB and 128 KiB, and
// nothing more (no PSRAM: the ESP32-S3 boards we support may have none, and the T3-S3's is optional).
const HEAP_BYTES = { esp32: 112 * 1024, esp32s3: 128 * 1024 };
// The VM's own heap holds our frozen modules too (an ESP32 keeps them in flash) and never shrinks.
const VM_HEAP_BYTES = 1024 * 1024;
// "none": the VM's heap, unlimited, for test harnesses that hold hundreds of cases at once.
const heapLimited = options.mcu !== "none";
if (heapLimited && !(options.mcu in HEAP_BYTES)) {
  fs.writeSync(2, `virtual board: unknown MCU ${options.mcu}: "esp32", "esp32s3" or "none"\n`);
  process.exit(1);
}
if (!["uart", "usb"].includes(options.console)) {
  fs.writeSync(2, `virtual board: unknown console ${options.console}: "uart" or "usb"\n`);
  process.exit(1);
}

// This VM (the webassembly port's pyscript variant) grows its heap without bound instead of collecting
// garbage mid-call: its gc_get_max_new_split() returns 128 MiB. We make it return 0, so the heap stays
// as given and an allocation that does not fit raises MemoryError as on a board. The function's body in
// the pinned micropython.wasm: no locals, i32.const 134217728, end.
const MAX_NEW_SPLIT_BODY = Buffer.from([0x08, 0x00, 0x41, 0x80, 0x80, 0x80, 0xc0, 0x00, 0x0b]);
const instantiate = WebAssembly.instantiate;
WebAssembly.instantiate = (source, imports) => {
  if (!(source instanceof ArrayBuffer || ArrayBuffer.isView(source))) return instantiate(source, imports);
  const wasm = Buffer.from(ArrayBuffer.isView(source) ? source.buffer.slice(source.byteOffset, source.byteOffset + source.byteLength) : source);
  const at = wasm.indexOf(MAX_NEW_SPLIT_BODY);
  if (at < 0 || wasm.indexOf(MAX_NEW_SPLIT_BODY, at + 1) >= 0) {
    fs.writeSync(2, "virtual board: this MicroPython VM is not the pinned one: cannot fix its heap; run `npm ci`\n");
    process.exit(1);
  }
  if (heapLimited) wasm.set([0x80, 0x80, 0x80, 0x80, 0x00], at + 3); // i32.const 0, in as many bytes
  return instantiate(wasm, imports).then((result) => {
    vmMemory = Object.values(result.instance.exports).find((value) => value instanceof WebAssembly.Memory);
    return result;
  });
};
let vmMemory; // the VM's linear memory, where flash reads land (flash.mjs)

const mp = await loadMicroPython({
  stdout: (bytes) => console_.put(bytes),
  stderr: (bytes) => console_.put(bytes),
  linebuffer: false,
  heapsize: VM_HEAP_BYTES,
});

// An event for the host: a synchronous write, so that it is out before an exit that follows.
function emit(type, body = {}) {
  if (options.events === undefined) return 0;
  try {
    fs.writeSync(Number(options.events), `${JSON.stringify({ type, ...body })}\n`);
  } catch {
    // the host stopped listening: it is powering the board off
  }
  return 0;
}

// The world outside the chip as the host last set it: the levels it drives on input pins (-1: none),
// the voltages on ADC pins, whether the flash refuses writes (flash.mjs reads it), and the last
// message of every other type (the chips on the buses).
const world = { pins: {}, adc: {}, last: {}, flash: { refuseWrites: false } };
const handlers = {}; // the frozen modules' handlers of control messages, lists by type (_board.on_control)

// Each control message updates the world, and gives its handler (if any) these arguments. The chips
// on the buses go to Python as the line that described them, whose numbers JavaScript would change.
const controls = {
  pin_level: ({ pin, level }) => {
    const old = world.pins[pin] ?? -1;
    world.pins[pin] = level ?? -1;
    return [pin, old, world.pins[pin]];
  },
  adc_voltage: ({ pin, microvolts }) => {
    world.adc[pin] = microvolts;
    return [pin, microvolts];
  },
  i2c_chips: (message, line) => [(world.last.i2c_chips = line)],
  spi_chips: (message, line) => [(world.last.spi_chips = line)],
  radio_frame: ({ payload, rssi_dbm, snr_x4, crc_ok }) => [payload, rssi_dbm, snr_x4, crc_ok],
  flash_fault: ({ refuse_writes }) => [(world.flash.refuseWrites = refuse_writes)],
};

function control(line) {
  const { type, seq, ...message } = JSON.parse(line);
  const apply = controls[type];
  if (apply === undefined) fs.writeSync(2, `virtual board: unknown control message ${type}\n`);
  else {
    const args = apply(message, line);
    for (const handler of handlers[type] ?? [])
      try {
        handler(...args);
      } catch (error) {
        fs.writeSync(2, `virtual board: ${type} handler failed: ${error}\n`);
      }
  }
  if (seq !== undefined) emit("ack", { seq });
}

for (const line of options.world.split("\n")) if (line) control(line); // before any handler exists

// The control pipe's text: applied line by line; how many lines it held.
let controlPending = "";
function takeControl(text) {
  const lines = (controlPending + text).split("\n");
  controlPending = lines.pop();
  for (const line of lines) if (line) control(line);
  return lines.length;
}

if (options.control !== undefined)
  new net.Socket({ fd: Number(options.control), readable: true, writable: false }).on("data", (chunk) => {
    takeControl(chunk.toString());
  });

// The CPU in light sleep, for `ms` (< 0: for ever): Node's timers wait, as the chip's do, but the world
// outside it goes on: the control pipe is read every millisecond (its fd is non-blocking: libuv opened
// it for the socket above), and its messages are applied. With `wakeOnControl`, the sleep ends once one
// is, for machine.py to look at the level of its wake pin. 1: ended so; 0: the time is up.
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const controlChunk = Buffer.alloc(4096);
function lightSleep(ms, wakeOnControl) {
  const end = performance.now() + (ms < 0 ? Infinity : ms);
  for (;;) {
    let n = 0;
    if (options.control !== undefined)
      try {
        n = fs.readSync(Number(options.control), controlChunk);
      } catch (error) {
        if (error.code !== "EAGAIN") throw error;
      }
    if (n > 0 && takeControl(controlChunk.toString("latin1", 0, n)) && wakeOnControl) return 1;
    const left = end - performance.now();
    if (left <= 0) return 0;
    Atomics.wait(sleeper, 0, 0, Math.min(left, 1));
  }
}

// CLOCK_MONOTONIC in ns, as Python's time.monotonic() reads it (a double: within a few ns for years).
const now = () => Number(process.hrtime.bigint());

// RTC slow memory: kept by the host in a file that power.py removes when the power goes.
fs.mkdirSync(options.state, { recursive: true });
const rtcMemory = path.join(options.state, "rtc_memory.bin");

// machine.Timer: callbacks on Node's clock, by handle.
const timers = new Map();
let nextTimer = 0;
const hostTimers = {
  timer_start: (periodMs, periodic, callback) => {
    const handle = nextTimer++;
    const fire = () => {
      if (!periodic) timers.delete(handle);
      try {
        callback();
      } catch (error) {
        fs.writeSync(2, `virtual board: timer callback failed: ${error}\n`);
      }
    };
    timers.set(handle, periodic ? setInterval(fire, periodMs) : setTimeout(fire, periodMs));
    return handle;
  },
  timer_stop: (handle) => {
    clearTimeout(timers.get(handle)); // clears an interval too
    timers.delete(handle);
    return 0;
  },
};

// While main.py runs, it holds the console: no REPL; input waits for its sys.stdin; Ctrl-C stops it.
const mainConsole = {
  held: false,
  interruptChar: 0x03,
};

mp.registerJsModule("_board", {
  ...hostTimers,
  kbd_intr: (char) => {
    mainConsole.interruptChar = char;
    return 0;
  },
  console_read: () => {
    // main.py read from a full receive buffer: a native USB console hands it what waits (giveToMain).
    if (mainConsole.held && input.length) setImmediate(feed);
    return 0;
  },
  release_console: () => {
    // main.py's task has ended: the REPL starts, after the Python call that told us returns, and
    // reads what main.py left unread.
    if (mainConsole.held)
      setImmediate(() => {
        input.unshift(...Buffer.from(boot.console_leftover(), "hex"));
        startRepl();
      });
    mainConsole.held = false;
    return 0;
  },
  flash: hostFlash(options.flash, () => vmMemory, world.flash),
  nvs: hostNvs(path.join(options.state, "nvs.json")),
  aes: hostAes(() => vmMemory),
  reset_cause: Number(options["reset-cause"]),
  unique_id: options["unique-id"],
  mcu: options.mcu,
  reset: () => end(EXIT_MACHINE_RESET),
  lightsleep: (ms, wakeOnControl) => lightSleep(ms, Boolean(wakeOnControl)),
  deepsleep: (ms) => {
    emit("deep_sleep", { ms });
    end(EXIT_DEEPSLEEP);
  },
  wdt: (timeoutMs) => emit("wdt_start", { timeout_ms: timeoutMs }),
  wdt_feed: () => emit("wdt_feed"),
  rtc_memory_read: () => (fs.existsSync(rtcMemory) ? fs.readFileSync(rtcMemory).toString("hex") : ""),
  rtc_memory_write: (hex) => {
    fs.writeFileSync(rtcMemory, Buffer.from(hex, "hex"));
    return 0;
  },
  // The world outside the chip: what the host drives, and the handlers of what it changes.
  pin_input: (pin) => world.pins[pin] ?? -1, // -1: the host does not drive it
  pin_output: (pin, level) => emit("pin_output", { pin, level: level < 0 ? null : level }), // -1: released
  adc_input: (pin) => world.adc[pin] ?? 0,
  last_control: (type) => world.last[type] ?? "", // the last message of that type as JSON, or ""
  on_control: (type, handler) => {
    (handlers[type] ??= []).push(handler);
    return 0;
  },
  // The LoRa modem (a radio chip's model): its settings as JSON, stamped in ns of the monotonic clock, which the
  // host reads too (the pipe may be read late).
  radio_receiving: (settings) => emit("radio_receiving", { at_ns: now(), settings: JSON.parse(settings) }),
  radio_idle: () => emit("radio_idle", { at_ns: now() }),
  radio_transmitting: (hex, settings) =>
    emit("radio_transmitting", { at_ns: now(), payload: hex, settings: JSON.parse(settings) }),
});

// Our frozen modules (MicroPython sources an ESP32 would have in its firmware) go into the VM's
// Emscripten filesystem, are imported, and stay in sys.modules once the flash replaces it at '/'.
const frozen = path.join(path.dirname(fileURLToPath(import.meta.url)), "frozen");
mp.FS.mkdir("/frozen");
const modules = fs.readdirSync(frozen).filter((name) => name.endsWith(".py"));
for (const name of modules) mp.FS.writeFile(`/frozen/${name}`, fs.readFileSync(path.join(frozen, name)));
mp.runPython(`import gc, sys
_bare_heap = gc.mem_alloc()
sys.path.append("/frozen")
import ${modules.map((name) => name.slice(0, -3)).join(", ")}
sys.path.remove("/frozen")
_boot.start()
gc.collect()`);
// The garbage of those imports is collected as the call returns: the firmware gets the rest, up to the ESP32's heap.
if (heapLimited) {
  mp.runPython("_boot.fill_holes()");
  mp.runPython(`_boot.limit_heap(${HEAP_BYTES[options.mcu]}, _bare_heap)`);
}
mp.runPython("del _bare_heap");

if (options["soft-reboot"]) console_.put(Buffer.from("MPY: soft reboot\r\n"));
const boot = mp.pyimport("_boot");
if (boot.run_script("boot.py") || (options.repl === "friendly" && boot.run_script("main.py"))) softReboot();
mainConsole.held = options.repl === "friendly" && boot.holds_console();

async function startRepl() {
  // A board that reboots in raw REPL shows the raw REPL's banner, not the friendly one first.
  console_.muted = options.repl === "raw";
  mp.replInit();
  if (options.repl === "raw") await mp.replProcessCharWithAsyncify(0x01);
  console_.muted = false;
  if (options.repl === "raw") console_.put(Buffer.from(`${RAW_REPL_BANNER}>`));
  feed(); // what arrived for the REPL meanwhile
}

// Input for main.py, up to a Ctrl-C, which ends main.py's task and starts the REPL. Its receive buffer
// (_console.py's 259-byte ring) is fed as MicroPython's ESP32 port (v1.27) feeds it from the console:
// - "uart": ports/esp32/uart.c's RX interrupt takes each byte as it comes: a Ctrl-C interrupts wherever
//   it is, and a byte that finds the ring full is lost. Dropped here, since on a board the bytes never
//   touch the Python heap, and a long burst passed in whole would exhaust it.
// - "usb": shared/tinyusb/mp_usbd_cdc.c's tud_cdc_rx_cb takes bytes in order while the ring has room
//   and leaves the rest in TinyUSB's FIFO, which NAKs the host once full: nothing is lost, the rest
//   waits for main.py to read (console_read), and so does a Ctrl-C behind it (which empties the ring).
function giveToMain() {
  let stop = mainConsole.interruptChar < 0 ? -1 : input.indexOf(mainConsole.interruptChar);
  const room = input.length ? boot.console_room() : 0;
  let taken;
  if (options.console === "usb") {
    if (stop >= room) stop = -1;
    taken = input.splice(0, stop < 0 ? room : stop);
  } else taken = input.splice(0, stop < 0 ? input.length : stop).slice(0, room);
  if (taken.length) boot.console_input(Buffer.from(taken).toString("hex"));
  if (stop < 0) return false;
  input.shift();
  mainConsole.held = false;
  boot.interrupt();
  console_.put(Buffer.from("KeyboardInterrupt\r\n"));
  return true;
}

// The console's input, one byte at a time: the event-driven REPL must finish a byte before the next.
const input = [];
let feeding = false;
let heldRequest = 0; // how many bytes of a raw-paste request have arrived
let pasted = null; // the code of a raw paste being received

// Raw-paste mode (what mpremote uses with a real board: no 10 ms pauses between 256-byte chunks) needs
// the REPL to wait for more input in the middle of a byte, which this REPL cannot. So the paste is
// gathered here, with its flow control, then typed into the plain raw REPL, whose "OK" is not part
// of the paste protocol's answer. (A control byte inside the code would act as one: mpremote sends none.)
async function receive(byte) {
  if (pasted !== null) {
    if (byte !== 0x04) {
      pasted.push(byte);
      if (pasted.length % RAW_PASTE_WINDOW === 0) console_.put([0x01]); // room for one more window
      return;
    }
    const code = pasted;
    pasted = null;
    console_.put([0x04]);
    console_.flush(); // the board acknowledges the paste before it runs the code (which may reset it)
    console_.swallow = "OK";
    for (const b of code) await type(b);
    await type(0x04);
    return;
  }
  if (console_.repl === "raw" && byte === RAW_PASTE_REQUEST[heldRequest]) {
    if (++heldRequest === RAW_PASTE_REQUEST.length) {
      heldRequest = 0;
      pasted = [];
      console_.put([0x52, 0x01, RAW_PASTE_WINDOW & 0xff, RAW_PASTE_WINDOW >> 8]); // "R\x01" and the window
    }
    return;
  }
  for (const b of [...RAW_PASTE_REQUEST.slice(0, heldRequest), byte]) await type(b);
  heldRequest = 0;
}

async function type(byte) {
  if (await mp.replProcessCharWithAsyncify(byte)) softReboot();
}

async function feed() {
  if (feeding) return;
  feeding = true;
  while (input.length) {
    if (mainConsole.held) {
      if (!giveToMain()) break;
      await startRepl();
    } else await receive(input.shift());
  }
  feeding = false;
}

if (!mainConsole.held) await startRepl();

process.stdin.on("data", (chunk) => {
  input.push(...chunk);
  feed();
});
process.stdin.on("end", () => end(0));
