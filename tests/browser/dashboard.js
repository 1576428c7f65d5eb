// dashboard.js: drive the gateway's dashboard in Debian's Chromium during a rollout.
//
//   node dashboard.js URL RELEASE N SCREENSHOT STATUS_CMD...
//
// URL: the gateway's HTTP side; RELEASE: the campaign under way; N: devices it targets;
// SCREENSHOT: where to write the PNG; STATUS_CMD: the command that prints the ledger
// (ota-gateway status --json ...). Prints TAP lines ("ok - ..." / "not ok - ...") and
// exits 1 if any check failed.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const puppeteer = require('puppeteer-core');

const [url, release, nStr, shot, ...statusCmd] = process.argv.slice(2);
const N = Number(nStr);
let failed = 0;

function ok(cond, desc, extra) {
  if (cond) console.log(`ok - ${desc}`);
  else {
    failed++;
    console.log(`not ok - ${desc}`);
    if (extra !== undefined) console.log(`# ${JSON.stringify(extra)}`);
  }
  return cond;
}

function ledgerState() {
  const out = execFileSync(statusCmd[0], statusCmd.slice(1), { encoding: 'utf8' });
  const j = JSON.parse(out);
  const r = j.releases.find((x) => x.release === release);
  return r ? r.campaign : null;
}

async function waitFor(desc, fn, ms) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return ok(true, desc);
    } catch (e) { last = e.message; }
    await new Promise((r) => setTimeout(r, 250));
  }
  return ok(false, desc, last);
}

// What the page shows of the campaign: its row's state and counts, the chart's end.
function pageView(page) {
  return page.evaluate((rel) => {
    const tr = document.querySelector(`#campaigns tr[data-release="${rel}"]`);
    const cv = document.getElementById('chart');
    const fleet = document.querySelector('#fleet-states .hrow[data-key="committed"] .n');
    return {
      state: tr ? tr.dataset.state : null,
      committed: tr ? Number(tr.querySelector('td.committed').textContent) : -1,
      chartRelease: cv.dataset.release,
      chartCommitted: Number(cv.dataset.committed),
      chartBusy: Number(cv.dataset.busy),
      chartPoints: Number(cv.dataset.points),
      fleetCommitted: fleet ? Number(fleet.textContent) : -1,
      live: document.getElementById('live').textContent,
      rows: document.querySelectorAll('#devices tbody tr').length,
      total: Number(document.getElementById('dev-total').textContent),
      verdict: document.getElementById('verdict').dataset.verdict || '',
      verdictText: document.getElementById('verdict').textContent,
    };
  }, release);
}

async function click(page, action) {
  const sel = `#campaigns tr[data-release="${release}"] button.act-${action}`;
  await page.waitForSelector(sel + ':not([disabled])', { timeout: 10000 });
  await page.click(sel);
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ota-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    userDataDir: profile,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.setViewport({ width: 1280, height: 1400 });
    await page.goto(url, { waitUntil: 'load' });
    await waitFor('the dashboard loads its data', () =>
      page.evaluate(() => document.body.dataset.ready === '1'), 15000);
    await waitFor('live updates arrive over the WebSocket', async () =>
      (await pageView(page)).live === 'live', 15000);
    await waitFor('the campaign is listed and the chart follows it', async () => {
      const v = await pageView(page);
      return v.state && v.chartRelease === release && v;
    }, 15000);

    // Pause while devices are still updating.
    const before = await pageView(page);
    ok(before.committed < N, `the rollout is under way when paused (${before.committed} of ${N} committed)`, before);
    await click(page, 'pause');
    await waitFor('the pause button shows the gateway\'s verdict: accepted', async () => {
      const v = await pageView(page);
      return v.verdict === 'accepted' && /pause .*accepted \(now paused\)/.test(v.verdictText) && v;
    }, 10000);
    await waitFor('the ledger says the campaign is paused', () => {
      const c = ledgerState();
      return c && c.state === 'paused' && c.paused;
    }, 10000);
    await waitFor('the page shows it paused', async () => (await pageView(page)).state === 'paused', 10000);
    // Paused: nothing is offered or sent; transfers keep their place (README).
    const held = ledgerState();
    await new Promise((r) => setTimeout(r, 3000));
    const still = ledgerState();
    ok(still.started === held.started && still.committed < N,
      `while paused no device starts (${still.started} started, ${still.committed} committed)`,
      { held, still });

    await click(page, 'resume');
    await waitFor('the resume button shows the gateway\'s verdict: accepted', async () => {
      const v = await pageView(page);
      return v.verdict === 'accepted' && /resume .*accepted/.test(v.verdictText) && v;
    }, 10000);
    await waitFor('the ledger says the campaign is rolling again', () => {
      const c = ledgerState();
      return c && c.state === 'rolling' && !c.paused;
    }, 10000);

    await waitFor(`the campaign row reaches ${N} committed`, async () => {
      const v = await pageView(page);
      return v.committed === N && v;
    }, 240000);
    await waitFor(`the chart reaches ${N} committed, none in progress`, async () => {
      const v = await pageView(page);
      return v.chartCommitted === N && v.chartBusy === 0 && v.chartPoints > 2 && v;
    }, 20000);
    await waitFor(`the fleet shows ${N} committed`, async () =>
      (await pageView(page)).fleetCommitted === N, 10000);
    const v = await pageView(page);
    ok(v.total === N && v.rows === 50, `the device table is paged: 50 rows of ${v.total}`, v);

    // Filters: by name, and by a state nobody is in.
    await page.type('#f-name', '-00');
    await waitFor('the name filter narrows the table', async () => {
      const x = await pageView(page);
      return x.total > 0 && x.total < N && x.rows === Math.min(50, x.total) && x;
    }, 10000);
    await page.click('#f-name', { clickCount: 3 });
    await page.keyboard.press('Backspace');
    await page.select('#f-state', 'failed');
    await waitFor('the state filter: no failed device', async () =>
      (await pageView(page)).total === 0, 10000);
    await page.select('#f-state', '');
    await waitFor('back to all devices', async () => (await pageView(page)).total === N, 10000);
    const stage = await page.evaluate(() =>
      document.querySelector('#devices tbody tr td:nth-child(10)').textContent);
    ok(/\d/.test(stage), `each device row has its stage timings (total ${stage})`);
    // How each device's update travelled and its wire bytes, as the ledger has them.
    const row = await page.evaluate(() => {
      const tr = document.querySelector('#devices tbody tr');
      return { device: tr.dataset.device, enc: tr.querySelector('td.enc').textContent,
        wire: tr.querySelector('td.wire').textContent };
    });
    const rec = JSON.parse(execFileSync(statusCmd[0], statusCmd.slice(1), { encoding: 'utf8' }))
      .devices.find((d) => d.device === row.device);
    const kib = rec && (rec.wire_bytes / 1024).toFixed(1) + ' KiB';
    ok(rec && rec.wire_bytes > 65536 && row.enc === rec.encoding && row.wire === kib,
      `a device row shows how its update travelled and its wire bytes (${row.enc}, ${row.wire})`,
      { row, ledger: rec && { encoding: rec.encoding, wire_bytes: rec.wire_bytes } });

    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: shot, fullPage: true });
    ok(fs.statSync(shot).size > 10000, `screenshot written to ${shot}`);
    ok(errors.length === 0, 'no script errors in the page', errors);
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => process.exit(failed ? 1 : 0), (e) => {
  console.log(`not ok - the browser test ran to the end # ${e.message}`);
  process.exit(1);
});
