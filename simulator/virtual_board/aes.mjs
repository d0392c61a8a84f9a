// AES for the VM's `cryptolib`, computed by the host as an ESP32 computes it in its AES peripheral.
//
// Synchronous, returns a negative errno on failure (a JavaScript exception would abort the VM), and
// bytes cross as hex strings, as in flash.mjs. frozen/cryptolib.py checks the arguments, keeps the
// CBC chaining value and raises what MicroPython raises; this is the block cipher alone.
import crypto from "node:crypto";

const EINVAL = 22;
const MODES = { 1: "ecb", 2: "cbc" }; // cryptolib's MODE_ECB, MODE_CBC

// aes(keyHex, mode, ivHex, dataHex, encrypt) -> hex of the output, or -EINVAL.
export function aes(keyHex, mode, ivHex, dataHex, encrypt) {
  try {
    const key = Buffer.from(keyHex, "hex");
    const name = `aes-${key.length * 8}-${MODES[mode]}`;
    const iv = mode === 2 ? Buffer.from(ivHex, "hex") : null;
    const cipher = encrypt ? crypto.createCipheriv(name, key, iv) : crypto.createDecipheriv(name, key, iv);
    cipher.setAutoPadding(false);
    const data = Buffer.from(dataHex, "hex");
    return Buffer.concat([cipher.update(data), cipher.final()]).toString("hex");
  } catch {
    return -EINVAL;
  }
}
