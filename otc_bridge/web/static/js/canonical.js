// The exact bytes a wallet signs (docs/protocol.md §3, otc_bridge/auth.py signed_message): the JSON
// of the message with keys sorted and no spaces, as Python's
//   json.dumps(payload, sort_keys=True, separators=(",", ":"))   (ensure_ascii=True)
// produces it, then UTF-8. Differences from JSON.stringify that matter:
//   * keys sorted by code point at every level (Python sorts str keys the same way for
//     the ASCII keys used here; we sort by UTF-16 units, identical for the BMP);
//   * ensure_ascii: every character outside printable ASCII (0x20-0x7e) is written as
//     \uXXXX with lower-case hex, astral characters as their surrogate pair, DEL included;
//   * numbers must be integers (the API refuses anything else in signed fields); BigInt
//     values are written as plain digits.

/** Canonical JSON text of ``value`` (object, array, string, integer, BigInt, bool, null). */
export function canonicalJson(value) {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return value.toString();
    case 'number':
      if (!Number.isSafeInteger(value)) throw new Error(`signed numbers must be safe integers, got ${value}`);
      return String(value);
    case 'string':
      return asciiString(value);
    case 'object':
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      return `{${Object.keys(value).sort()
        .filter((k) => value[k] !== undefined)
        .map((k) => `${asciiString(k)}:${canonicalJson(value[k])}`).join(',')}}`;
    default:
      throw new Error(`cannot sign a ${typeof value}`);
  }
}

function asciiString(text) {
  // JSON.stringify already escapes quote, backslash and control characters exactly as
  // Python does (\b \f \n \r \t short forms, \u00XX lower-case otherwise); what is left is
  // to escape everything beyond printable ASCII.
  return JSON.stringify(text).replace(/[^\x20-\x7e]/g,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The message bytes for one signed request (auth.signed_message). */
export function signedMessage(action, orderId, timestamp, wallet, bound) {
  const payload = {...bound, action, order_id: orderId, timestamp, wallet};
  return new TextEncoder().encode(canonicalJson(payload));
}
