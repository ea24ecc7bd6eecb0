// Permissions: `resource:action` pairs with `*` as a wildcard on either side, carried in a
// token's space-separated `scope`. A held wildcard grants; a requested wildcard is granted only
// by a held one (holding `users:read` does not allow `users:*`). Tessera's own rule.

const PART = /^(\*|[a-z0-9_.-]{1,64})$/;

function parts(text: string): [string, string] | undefined {
  const colon = text.indexOf(":");
  if (colon < 0) return undefined;
  const resource = text.slice(0, colon);
  const action = text.slice(colon + 1);
  return PART.test(resource) && PART.test(action) ? [resource, action] : undefined;
}

/** Whether `text` is a permission (`resource:action`). */
export function isPermission(text: string): boolean {
  return parts(text) !== undefined;
}

/** Whether the space-separated permissions in `scope` allow `wanted`. An invalid `wanted` is
 * allowed to no one; entries of `scope` that are not permissions grant nothing. */
export function hasPermission(scope: string, wanted: string): boolean {
  const asked = parts(wanted);
  if (asked === undefined) return false;
  const covers = (held: string, want: string) => held === "*" || held === want;
  return scope.split(" ").some((item) => {
    const held = parts(item);
    return held !== undefined && covers(held[0], asked[0]) && covers(held[1], asked[1]);
  });
}
