// The official OpenFeature server SDK for JavaScript with its OFREP provider, evaluating
// Tessera's flags. Reads {"base_url", "tokens": {name: bearer token}} on stdin and prints, for
// each token, the details of a fixed set of evaluations as JSON.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const details = (d) => ({
  value: d.value,
  reason: d.reason,
  variant: d.variant ?? null,
  error_code: d.errorCode ?? null,
});

const results = {};
for (const [name, token] of Object.entries(request.tokens)) {
  const provider = new OFREPProvider({
    baseUrl: request.base_url,
    headers: { Authorization: `Bearer ${token}` },
  });
  await OpenFeature.setProviderAndWait(name, provider);
  const client = OpenFeature.getClient(name);
  const context = { targetingKey: 'user-7', plan: 'pro' };
  results[name] = {
    bool: details(await client.getBooleanDetails('dark_mode', true, context)),
    string: details(await client.getStringDetails('banner_text', 'code', context)),
    number: details(await client.getNumberDetails('max_upload_mb', 0, context)),
    object: details(await client.getObjectDetails('theme', {}, context)),
    missing: details(await client.getBooleanDetails('no_such_flag', true, context)),
  };
}
await OpenFeature.close();
console.log(JSON.stringify(results));
