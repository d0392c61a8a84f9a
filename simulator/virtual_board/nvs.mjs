// The board's NVS partition (ESP-IDF's key-value store behind `esp32.NVS`), kept in a JSON file of
// the host: {namespace: {key: ["i32", n] | ["blob", hex]}}.
//
// Writes go to this VM's copy and reach the file only at commit(), so uncommitted writes are lost
// at the next reset of any kind: each reset ends this process. (The MicroPython documentation says
// "Failure to call commit results in changes being lost at the next reset".)
// Failures return ESP-IDF's error code, negated as MicroPython's check_esp_err does (never throw).
import fs from "node:fs";

export const ESP_ERR_NVS_NOT_FOUND = 0x1102;
export const ESP_ERR_NVS_KEY_TOO_LONG = 0x1109;
export const ESP_ERR_NVS_INVALID_LENGTH = 0x110c;
export const ESP_ERR_NVS_NOT_ENOUGH_SPACE = 0x1105;
const MAX_KEY_LENGTH = 15; // NVS_KEY_NAME_MAX_SIZE - 1

function load(file) {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    return {}; // a blank (or erased) partition
  }
}

export function hostNvs(file) {
  const committed = load(file);
  const live = structuredClone(committed);
  const space = (namespace) => (live[namespace] ??= {});
  const tooLong = (name) => name.length > MAX_KEY_LENGTH;

  return {
    // open(namespace) -> 0 or an error
    open: (namespace) => (tooLong(namespace) ? -ESP_ERR_NVS_KEY_TOO_LONG : 0),
    // get(namespace, key, kind) -> JSON of the value (a number, or hex of a blob) or an error.
    // A key stored with another type is not found, as nvs_get_* look a key up with its type.
    get: (namespace, key, kind) => {
      const item = space(namespace)[key];
      return item && item[0] === kind ? JSON.stringify(item[1]) : -ESP_ERR_NVS_NOT_FOUND;
    },
    set: (namespace, key, kind, value) => {
      if (tooLong(key)) return -ESP_ERR_NVS_KEY_TOO_LONG;
      space(namespace)[key] = [kind, value];
      return 0;
    },
    erase: (namespace, key) => {
      if (!(key in space(namespace))) return -ESP_ERR_NVS_NOT_FOUND;
      delete space(namespace)[key];
      return 0;
    },
    commit: (namespace) => {
      try {
        committed[namespace] = structuredClone(space(namespace));
        fs.writeFileSync(`${file}.tmp`, JSON.stringify(committed, null, 1));
        fs.renameSync(`${file}.tmp`, file); // a power cut mid-commit keeps the old values
        return 0;
      } catch {
        return -ESP_ERR_NVS_NOT_ENOUGH_SPACE;
      }
    },
  };
}
