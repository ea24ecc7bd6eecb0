// Drives the TypeScript package's compiled platform-config loader against a running Tessera. Reads
// {"base_url", "token"} on stdin; prints what the loader saw and how many requests it made.
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const dist = process.argv[2];
const { PlatformConfigLoader } = await import(pathToFileURL(join(dist, 'index.js')).href);
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const statuses = [];
const counting = async (url, init) => {
  const response = await fetch(url, init);
  statuses.push(response.status);
  return response;
};
const anonymous = new PlatformConfigLoader({ tesseraUrl: input.base_url, fetch: counting });
const first = await anonymous.load();
const again = await anonymous.load();
const signedIn = new PlatformConfigLoader({ tesseraUrl: input.base_url, fetch: counting, accessToken: input.token });
const mine = await signedIn.load();
console.log(JSON.stringify({
  statuses,
  same_object: first === again,
  anonymous_features: first.features,
  banking: anonymous.enabled('enableBanking', true),
  signed_in_features: mine.features,
  app: first.app,
}));
