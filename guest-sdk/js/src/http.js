// polymongo-guest for JavaScript: HTTP helpers (`Request`, `Response`, `errorResponse`,
// `percentDecode`) and the `Router`. Re-exported by index.js.

import { HttpError, PolymongoError } from "./errors.js";

const utf8 = new TextDecoder("utf-8");
const utf8Strict = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** Decodes `%XX` escapes (and `+` as a space when `plusIsSpace`); malformed escapes are kept,
 *  invalid UTF-8 becomes U+FFFD (as the Rust SDK). */
export function percentDecode(s, plusIsSpace = false) {
  const input = encoder.encode(s);
  const out = new Uint8Array(input.length);
  const hex = (b) => (b >= 48 && b <= 57 ? b - 48 : b >= 65 && b <= 70 ? b - 55 : b >= 97 && b <= 102 ? b - 87 : -1);
  let n = 0;
  for (let i = 0; i < input.length; ) {
    const b = input[i];
    if (b === 0x2b && plusIsSpace) {
      out[n++] = 0x20;
      i += 1;
    } else if (b === 0x25 && i + 2 < input.length && hex(input[i + 1]) >= 0 && hex(input[i + 2]) >= 0) {
      out[n++] = hex(input[i + 1]) * 16 + hex(input[i + 2]);
      i += 3;
    } else {
      out[n++] = b;
      i += 1;
    }
  }
  return utf8.decode(out.subarray(0, n));
}

function wellFormed(value) {
  if (typeof value === "string") return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(value);
  if (Array.isArray(value)) return value.every(wellFormed);
  if (value !== null && typeof value === "object") {
    return Object.entries(value).every(([k, v]) => wellFormed(k) && wellFormed(v));
  }
  return true;
}

/** An HTTP request routed to the plugin. */
export class Request {
  constructor({ method, path, query = "", headers = [], body = new Uint8Array(), tenant = "" }) {
    /** HTTP method, upper case. */
    this.method = method;
    /** The path below the plugin's prefix, starting with `/`. */
    this.path = path;
    /** The raw query string without `?`. */
    this.query = query;
    /** `[name, value]` pairs, names lower case. */
    this.headers = headers;
    /** The body bytes. */
    this.body = body;
    /** The tenant this request is for. */
    this.tenant = tenant;
  }

  /** The body parsed as JSON; throws `HttpError(400, "invalid JSON body: ...")` otherwise
   *  (also for invalid UTF-8 and unpaired surrogate escapes, as serde_json). */
  json() {
    let value;
    try {
      value = JSON.parse(utf8Strict.decode(this.body));
    } catch (e) {
      throw new HttpError(400, `invalid JSON body: ${e.message}`);
    }
    if (!wellFormed(value)) throw new HttpError(400, "invalid JSON body: unpaired surrogate");
    return value;
  }

  /** The body as text (invalid UTF-8 replaced by U+FFFD). */
  text() {
    return utf8.decode(this.body);
  }

  /** Every query parameter, decoded as `application/x-www-form-urlencoded`, in order. */
  queryParams() {
    return this.query
      .split("&")
      .filter((pair) => pair !== "")
      .map((pair) => {
        const eq = pair.indexOf("=");
        return eq < 0
          ? [percentDecode(pair, true), ""]
          : [percentDecode(pair.slice(0, eq), true), percentDecode(pair.slice(eq + 1), true)];
      });
  }

  /** The first query parameter called `name`, decoded; `undefined` if absent. */
  queryParam(name) {
    const found = this.queryParams().find(([k]) => k === name);
    return found ? found[1] : undefined;
  }

  /** The first header called `name` (case-insensitive); `undefined` if absent. */
  header(name) {
    const lower = name.toLowerCase();
    const found = this.headers.find(([k]) => k.toLowerCase() === lower);
    return found ? found[1] : undefined;
  }
}

/** The plugin's answer. */
export class Response {
  constructor(status, headers = [], body = new Uint8Array()) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }

  /** `status` with `value` as JSON (`content-type: application/json`). */
  static json(status, value) {
    return new Response(status, [["content-type", "application/json"]], encoder.encode(JSON.stringify(value)));
  }

  /** `status` with a plain-text body. */
  static text(status, text) {
    return new Response(status, [["content-type", "text/plain; charset=utf-8"]], encoder.encode(String(text)));
  }

  /** `status` without body or headers (e.g. 204). */
  static empty(status) {
    return new Response(status);
  }

  /** `{"error": message}` with `status`. */
  static error(status, message) {
    return Response.json(status, { error: String(message) });
  }

  /** Adds a header (builder style). */
  withHeader(name, value) {
    this.headers.push([name, String(value)]);
    return this;
  }

  /** The first header called `name` (case-insensitive). */
  header(name) {
    const lower = name.toLowerCase();
    const found = this.headers.find(([k]) => k.toLowerCase() === lower);
    return found ? found[1] : undefined;
  }
}

/** The response for anything a handler throws: `HttpError` and `PolymongoError` keep their
 *  status; anything else is a 500. */
export function errorResponse(e) {
  if (e instanceof HttpError) {
    const r = Response.error(e.status, e.message);
    for (const [k, v] of e.headers) r.withHeader(k, v);
    return r;
  }
  if (e instanceof PolymongoError) return Response.error(e.status, e.message);
  return Response.error(500, `internal error: ${e && e.message ? e.message : String(e)}`);
}

// ---- routing ---------------------------------------------------------------------------------

/** The segments of an absolute path, ignoring one trailing `/` (`/` has none). */
function split(path) {
  let p = path.startsWith("/") ? path.slice(1) : path;
  if (p.endsWith("/")) p = p.slice(0, -1);
  return p === "" ? [] : p.split("/");
}

/**
 * Routes requests by method and path pattern (`/users/:id`), like the Rust SDK's `Router`:
 * routes are tried in order; methods compare case-insensitively; a trailing `/` is ignored.
 * No match: 405 `{"error": "method not allowed"}` with `allow` when the path matches with
 * another method, else 404 `{"error": "not found"}`. Handlers get `(req, params)` and return a
 * `Response`; what they throw becomes one (`errorResponse`).
 */
export class Router {
  constructor() {
    this.routes = [];
  }

  route(method, pattern, handler) {
    if (!pattern.startsWith("/")) throw new Error(`route pattern must start with '/': ${pattern}`);
    const segments = split(pattern).map((s) => (s.startsWith(":") ? { param: s.slice(1) } : { literal: s }));
    this.routes.push({ method: method.toUpperCase(), segments, handler });
    return this;
  }
  get(pattern, handler) {
    return this.route("GET", pattern, handler);
  }
  post(pattern, handler) {
    return this.route("POST", pattern, handler);
  }
  put(pattern, handler) {
    return this.route("PUT", pattern, handler);
  }
  patch(pattern, handler) {
    return this.route("PATCH", pattern, handler);
  }
  delete(pattern, handler) {
    return this.route("DELETE", pattern, handler);
  }

  static #match(route, path) {
    const parts = split(path);
    if (parts.length !== route.segments.length) return null;
    const params = {};
    for (let i = 0; i < parts.length; i++) {
      const seg = route.segments[i];
      if (seg.literal !== undefined) {
        if (seg.literal !== parts[i]) return null;
      } else {
        if (parts[i] === "") return null;
        params[seg.param] = percentDecode(parts[i], false);
      }
    }
    return params;
  }

  /** Routes `req` to the first matching handler. */
  handle(req) {
    const allowed = [];
    for (const route of this.routes) {
      const params = Router.#match(route, req.path);
      if (params === null) continue;
      if (route.method === req.method.toUpperCase()) {
        try {
          return route.handler(req, params);
        } catch (e) {
          return errorResponse(e);
        }
      }
      if (!allowed.includes(route.method)) allowed.push(route.method);
    }
    if (allowed.length === 0) return Response.error(404, "not found");
    return Response.error(405, "method not allowed").withHeader("allow", allowed.join(", "));
  }
}
