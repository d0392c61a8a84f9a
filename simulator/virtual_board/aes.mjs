// AES for the VM's `cryptolib`, computed by the host as an ESP32 computes it in its AES peripheral.
//
// Synchronous, returns a negative errno on failure (a JavaScript exception would abort the VM). The
// data is read from and written to the Python buffers in the VM's memory, at the addresses that
// frozen/cryptolib.py passes, as flash.mjs reads into them: so `encrypt(buf, buf)` allocates nothing on
// the Python heap, as ESP32's C module (extmod/modcryptolib.c) does not. frozen/cryptolib.py checks
// the arguments and raises what MicroPython raises; this is the block cipher and CBC's chaining value.
import crypto from "node:crypto";

const EINVAL = 22;
const MODES = { 1: "ecb", 2: "cbc" }; // cryptolib's MODE_ECB, MODE_CBC

// `memory()` gives the VM's linear memory. aes(keyHex, mode, ivAddress, inAddress, outAddress, length,
// encrypt) -> length, or -EINVAL. CBC's chaining value (16 bytes at ivAddress) is updated in place.
export function hostAes(memory) {
  return (keyHex, mode, ivAddress, inAddress, outAddress, length, encrypt) => {
    try {
      const key = Buffer.from(keyHex, "hex");
      const name = `aes-${key.length * 8}-${MODES[mode]}`;
      const bytes = (address, count) => new Uint8Array(memory().buffer, address, count);
      const iv = mode === 2 ? Buffer.from(bytes(ivAddress, 16)) : null;
      const cipher = encrypt ? crypto.createCipheriv(name, key, iv) : crypto.createDecipheriv(name, key, iv);
      cipher.setAutoPadding(false);
      const data = Buffer.from(bytes(inAddress, length)); // a copy: the output may be the input
      const result = Buffer.concat([cipher.update(data), cipher.final()]);
      bytes(outAddress, length).set(result);
      if (mode === 2) bytes(ivAddress, 16).set((encrypt ? result : data).subarray(length - 16));
      return length;
    } catch {
      return -EINVAL;
    }
  };
}
