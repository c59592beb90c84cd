// End-to-end test of the web portal in a real headless Chromium, driven by playwright-core.
//
//   node portal.mjs <gateway url> <component .wasm> <screenshot dir>
//
// Environment: WASMGATE_PLAYWRIGHT_DIR (the folder `npm install --prefix` put playwright-core in;
// .ci/test sets it), WASMGATE_CHROMIUM (default /usr/bin/chromium), WASMGATE_UI_CREDENTIALS
// (`user:password` when the gateway has basic auth). Exits non-zero on the first failed check.
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const [base, wasmPath, shots] = process.argv.slice(2);
if (!base || !wasmPath || !shots) {
  console.error('usage: node portal.mjs <gateway url> <component .wasm> <screenshot dir>');
  process.exit(2);
}
const chromiumPath = process.env.WASMGATE_CHROMIUM || '/usr/bin/chromium';
const playwrightDir = process.env.WASMGATE_PLAYWRIGHT_DIR;
const credentials = process.env.WASMGATE_UI_CREDENTIALS;

function fail(message) {
  console.error(`FAILED: ${message}`);
  process.exit(1);
}
if (!existsSync(chromiumPath)) fail(`no Chromium at ${chromiumPath}: run .ci/test, which installs it`);
let chromium;
try {
  const require = createRequire(join(resolve(playwrightDir || '.'), 'package.json'));
  ({ chromium } = require('playwright-core'));
} catch (error) {
  fail(`playwright-core not found in ${playwrightDir || '(WASMGATE_PLAYWRIGHT_DIR unset)'}: run .ci/test (${error.message})`);
}

const started = Date.now();
const step = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);
const check = (ok, message) => ok || fail(message);
const authHeader = credentials ? { Authorization: `Basic ${Buffer.from(credentials).toString('base64')}` } : {};
const api = (method, path, body) => fetch(base + path, { method, body, headers: authHeader });

const NAME = 'hello-ui';
const KEY = `${NAME}.openfaas-fn`;
const GREETING = 'Hello from wasmgate! You asked for /x\n';

const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const problems = [];
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    colorScheme: 'light',
    ...(credentials
      ? { httpCredentials: { username: credentials.split(':')[0], password: credentials.split(':').slice(1).join(':') } }
      : {}),
  });
  // Nothing may leave 127.0.0.1: the portal is self-contained.
  await context.route(
    (url) => !url.href.startsWith(base),
    (route) => {
      problems.push(`request to another origin: ${route.request().url()}`);
      return route.abort();
    },
  );
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on('pageerror', (error) => problems.push(`uncaught error in the page: ${error.message}`));
  page.on('console', (msg) => {
    if (/Content Security Policy|Refused to/i.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  let confirmDelete = false;
  page.on('dialog', async (dialog) => {
    if (confirmDelete && dialog.type() === 'confirm' && dialog.message().startsWith(`Delete ${KEY}?`)) {
      await dialog.accept();
    } else {
      problems.push(`unexpected dialog: ${dialog.message()}`);
      await dialog.dismiss();
    }
  });

  // 1. The list loads (through the /ui redirect) and shows the function the gateway started with.
  step(`open ${base}/ui`);
  const response = await page.goto(`${base}/ui`);
  check(response.ok(), `GET /ui/ answered ${response.status()}`);
  check(page.url() === `${base}/ui/`, `/ui did not redirect to /ui/ (at ${page.url()})`);
  check(
    (response.headers()['content-security-policy'] || '').includes("default-src 'none'"),
    'no strict Content-Security-Policy on the page',
  );
  const rows = page.locator('#functions tbody tr');
  await rows.filter({ hasText: 'echo' }).waitFor();
  check((await rows.count()) === 1, `expected 1 function listed, saw ${await rows.count()}`);
  const echoRow = await rows.first().innerText();
  check(/echo\s+openfaas-fn\s+echo\.wasm\s+wasi:http@0\.2\s+1\/1\s+0\s+never/.test(echoRow), `unexpected echo row: ${echoRow}`);
  step(`list loaded: ${echoRow.replace(/\s+/g, ' ')}`);

  // Every form control has a label, and the results are announced.
  const unlabelled = await page.$$eval('input, select, textarea', (els) =>
    els.filter((e) => e.labels.length === 0 && !e.getAttribute('aria-label')).map((e) => e.id || e.outerHTML),
  );
  check(unlabelled.length === 0, `controls without a label: ${unlabelled.join(', ')}`);
  for (const id of ['t-status', 'd-status']) {
    check((await page.getAttribute(`#${id}`, 'aria-live')) === 'polite', `#${id} is not aria-live`);
  }

  // 2. A broken component dropped on the deploy panel: the API's reason is shown as it gave it.
  step('drop a broken component on the deploy panel');
  const bogus = 'this is not a WebAssembly component';
  const direct = await api('POST', '/system/artifacts', bogus);
  check(direct.status === 400, `the API accepted a broken component (${direct.status})`);
  const reason = (await direct.text()).replace(/\n$/, '');
  await page.evaluate((text) => {
    const data = new DataTransfer();
    data.items.add(new File([text], 'broken.wasm', { type: 'application/wasm' }));
    const target = document.getElementById('drop');
    for (const type of ['dragover', 'drop']) {
      target.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
    }
  }, bogus);
  check((await page.inputValue('#d-name')) === 'broken', 'the dropped file did not suggest a name');
  await page.click('#d-submit');
  await page.locator('#d-status pre').waitFor();
  const shown = await page.textContent('#d-status pre');
  check(shown === reason, `the page shows ${JSON.stringify(shown)}, the API said ${JSON.stringify(reason)}`);
  check((await page.textContent('#d-status p')).includes('400'), 'the status code of the refusal is not shown');
  step(`refusal shown verbatim: ${reason.slice(0, 100)}`);

  // 3. Deploy by upload with an environment variable and a memory limit, as a user would (keyboard).
  step(`upload ${wasmPath}`);
  await page.setInputFiles('#d-file', wasmPath);
  await page.fill('#d-name', NAME);
  await page.fill('#d-env', 'GREETING=hi from the portal');
  await page.fill('#d-memory', '64Mi');
  await page.focus('#d-submit');
  await page.keyboard.press('Enter');
  await page.locator('#d-status.ok').waitFor();
  step(await page.textContent('#d-status'));
  const described = await (await api('GET', `/system/function/${NAME}`)).json();
  const digest = `sha256:${(await import('node:crypto')).createHash('sha256').update(readFileSync(wasmPath)).digest('hex')}`;
  check(described.image === digest, `deployed image ${described.image}, expected ${digest}`);
  check(described.envVars && described.envVars.GREETING === 'hi from the portal', `envVars: ${JSON.stringify(described.envVars)}`);
  check(described.limits && described.limits.memory === '64Mi', `limits: ${JSON.stringify(described.limits)}`);
  const newRow = rows.filter({ hasText: NAME });
  await newRow.waitFor();
  check((await newRow.innerText()).includes(digest.slice(0, 19)), 'the new row does not show its digest');
  await page.locator('#detail:not([hidden])').waitFor();
  check((await page.textContent('#detail-name')) === KEY, 'the deployed function is not the one opened');
  const cells = newRow.locator('td');
  const calledBefore = Number(await cells.nth(4).textContent());
  check((await cells.nth(5).textContent()) === 'never', 'a freshly deployed (loaded) function shows a cold start');

  // 4. Try it: the answer, its headers, duration and that it was not a cold start (deploy loads it).
  step('invoke GET /x from the try panel');
  await page.selectOption('#t-method', 'GET');
  await page.fill('#t-path', '/x');
  await page.click('#t-send');
  await page.locator('#t-status.ok', { hasText: 'GET /x: 200 OK' }).waitFor();
  check((await page.textContent('#t-resp-body')) === GREETING, `body: ${await page.textContent('#t-resp-body')}`);
  check((await page.textContent('#t-code')) === '200 OK', `status: ${await page.textContent('#t-code')}`);
  check((await page.textContent('#t-cold')) === 'no', `cold start: ${await page.textContent('#t-cold')}`);
  check((await page.textContent('#t-resp-headers')).includes('x-call-id: '), 'no X-Call-Id among the headers');
  check(/ms|µs/.test(await page.textContent('#t-duration')), 'no duration shown');
  // The gateway traces (to a collector that is not there): the panel shows the call's trace id.
  const trace = (await page.textContent('#t-trace')).trim();
  check(/^[0-9a-f]{32}$/.test(trace), `trace id: ${trace}`);
  check((await page.textContent('#t-resp-headers')).includes(`traceresponse: 00-${trace}-`), 'the trace id shown is not the answer\'s traceresponse');
  step(`answered: ${(await page.textContent('#t-status')).trim()}`);

  // 5. Its log line arrives in the following log view.
  await page.locator('#logs', { hasText: 'hello called for /x' }).waitFor();
  step('log line seen: hello called for /x');

  // 6. Scaled to zero, the next call is a cold start, and the list says when it happened.
  const scaled = await api('POST', `/system/scale-function/${NAME}`, JSON.stringify({ serviceName: NAME, replicas: 0 }));
  check(scaled.status === 202, `scaling to zero answered ${scaled.status}`);
  await page.fill('#t-path', '/cold');
  await page.click('#t-send');
  await page.locator('#t-status', { hasText: /^GET \/cold: 200 OK .*, cold start\.$/ }).waitFor();
  check((await page.textContent('#t-cold')) === 'yes', 'the call after scaling to zero was not a cold start');
  await page.locator('#logs', { hasText: 'hello called for /cold' }).waitFor();
  await cells.nth(5).filter({ hasText: /^\d+ s ago$/ }).waitFor();
  step(`after a cold start: ${(await newRow.innerText()).replace(/\s+/g, ' ')}`);

  // 7. A few more calls, spread over some seconds, and the charts draw them from /metrics.
  for (const path of ['/a', '/b', '/c']) {
    await page.waitForTimeout(1500);
    await page.fill('#t-path', path);
    await page.click('#t-send');
    await page.locator('#t-status', { hasText: `GET ${path}: 200 OK` }).waitFor();
  }
  await page.fill('#t-path', '/x');
  await page.click('#t-send');
  await page.locator('#t-status', { hasText: 'GET /x: 200 OK' }).waitFor();
  await page.waitForFunction(() => /^latest p50 /.test(document.getElementById('c-lat-now').textContent), null, {
    timeout: 20_000,
  });
  await page.waitForFunction(() => !/peak 0\.00\//.test(document.getElementById('c-rps-now').textContent));
  check((await page.locator('#c-rps polyline').count()) > 0, 'the requests chart has no line');
  check((await page.locator('#c-lat polyline').count()) >= 3, 'the latency chart lacks its three lines');
  step(`charts: ${await page.textContent('#c-rps-now')} | ${await page.textContent('#c-lat-now')}`);
  // The list's invocation count follows the six calls.
  await cells.nth(4).filter({ hasText: new RegExp(`^${calledBefore + 6}$`) }).waitFor();

  // 8. Screenshots of the list and of the try panel.
  mkdirSync(shots, { recursive: true });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.locator('#functions-h').locator('..').screenshot({ path: join(shots, 'list.png') });
  await page.locator('#detail').screenshot({ path: join(shots, 'try.png') });
  await page.screenshot({ path: join(shots, 'page.png'), fullPage: true });
  step(`screenshots in ${shots}: list.png, try.png, page.png`);

  // 9. The keyboard reaches the function's name button, and Enter opens it.
  await page.click('#close');
  await page.locator('#detail[hidden]').waitFor({ state: 'attached' });
  check((await page.evaluate(() => document.activeElement.textContent)) === NAME, 'Close did not return focus to the row');
  await page.keyboard.press('Enter');
  await page.locator('#detail:not([hidden])').waitFor();
  check((await page.evaluate(() => document.activeElement.id)) === 'detail-h', 'Enter on a name did not focus the panel');

  // 10. A function deployed with a schedule and topics shows them in its row.
  const triggered = await api('POST', '/system/functions', JSON.stringify({
    service: 'ticker', image: wasmPath, labels: {}, annotations: { topic: 'cron-function,jobs.done', schedule: '@hourly' },
  }));
  check(triggered.status === 202, `deploying ticker: ${triggered.status} ${await triggered.text()}`);
  const tickerRow = rows.filter({ hasText: 'ticker' });
  await tickerRow.locator('td').nth(6).filter({ hasText: 'HTTP · cron @hourly · topics jobs.done' }).waitFor();
  step(`triggers shown: ${await tickerRow.locator('td').nth(6).textContent()}`);

  // 10b. A Spin app (two components, one private) shows its components and their routes.
  const manifest = [
    'spin_manifest_version = 2', '[application]', 'name = "spinui"',
    '[[trigger.http]]', 'route = "/api/..."', 'component = "web"',
    '[[trigger.http]]', 'route = "/x"', 'component = "web"',
    '[[trigger.http]]', 'route = { private = true }', 'component = "inner"',
    '[component.web]', 'source = "web.wasm"', '[component.inner]', 'source = "inner.wasm"', '',
  ].join('\n');
  const spin = await api('POST', '/system/functions', JSON.stringify({
    service: 'spinui', image: 'spin.toml', labels: {},
    annotations: { 'com.wasmgate.spin.manifest': manifest, 'com.wasmgate.spin.sources': `web=${wasmPath},inner=${wasmPath}` },
  }));
  check(spin.status === 202, `deploying spinui: ${spin.status} ${await spin.text()}`);
  const spinRow = rows.filter({ hasText: 'spinui' });
  await spinRow.locator('td').nth(6).filter({ hasText: 'HTTP · Spin: inner private; web /api/... /x' }).waitFor();
  step(`components shown: ${await spinRow.locator('td').nth(6).textContent()}`);

  // 11. Delete, confirmed: the function leaves the list and the API.
  confirmDelete = true;
  await page.click('#delete');
  await newRow.waitFor({ state: 'detached' });
  check((await api('GET', `/system/function/${NAME}`)).status === 404, 'the deleted function is still deployed');
  check((await page.evaluate(() => document.activeElement.id)) === 'functions-h', 'focus was lost after deleting');
  step('deleted from the page');

  check(problems.length === 0, problems.join('\n'));
  step('portal test passed');
} catch (error) {
  fail(`${error.stack || error}${problems.length ? `\nalso: ${problems.join('\n')}` : ''}`);
} finally {
  await browser.close();
}
