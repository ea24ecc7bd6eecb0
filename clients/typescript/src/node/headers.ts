// Request headers as Node frameworks hand them over, read the way Tessera reads them: repeated
// headers kept apart (Node's `request.headersDistinct`), so "sent twice" can be refused.

/** Lowercase names, each a string or a list of values, or a fetch `Headers`. */
export type HeaderSource = Headers | Record<string, string | string[] | undefined>;

/** Every value of header `name` (lowercase). */
export function headerValues(headers: HeaderSource, name: string): string[] {
  if (typeof Headers !== "undefined" && headers instanceof Headers) {
    if (name === "set-cookie") return headers.getSetCookie();
    const value = headers.get(name);
    return value === null ? [] : [value];
  }
  const value = (headers as Record<string, string | string[] | undefined>)[name];
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}
