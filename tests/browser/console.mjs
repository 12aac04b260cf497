// Drives the admin web console (pipe2me-admin serve) in Debian's headless Chromium with
// playwright-core, one step per run, as a person would: typing into its forms and clicking its
// buttons. tests/e2e/81-console-browser.sh runs the steps in order and checks between them what
// the rest of the system does (a pod started from the downloaded file, consumers, the registrar).
//
//   node console.mjs --url URL --state FILE --shot PREFIX [--timeout SECONDS] STEP ARGS...
//
// Steps (the session cookie is kept in --state, a Playwright storage state, between runs):
//   login TOKEN_FILE          log in with the token read from TOKEN_FILE; the pods table shows
//   add ID LABEL OUT          add pod ID with LABEL through the form; the provisioning download is
//                             saved to OUT (mode 0600); the pod's row appears without a reload
//   watch ID                  open the page, print "watching" once the pod's row shows it offline,
//                             then wait, without reloading, until the live view shows it online
//   disable ID | enable ID    click the pod's button; its state cell follows
//   rotate ID OUT             confirm a new secret; the download is saved to OUT; the page and a
//                             GET of the action's URL do not show the secret again
//   rm ID                     confirm the removal; the pod's row disappears
// Each step leaves a screenshot PREFIX-STEP.png. Prints `result=ok step=STEP ...` on stdout and
// exits 0; on failure prints `console: FAIL: reason` on stderr and exits 1. Bounded by --timeout
// (default 60 s per wait, 120 s for the run); the browser is always closed.
import { parseArgs } from 'node:util';
import { readFileSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
    '--disable-component-update', '--disable-sync'];

let opts, positionals;
try {
    ({ values: opts, positionals } = parseArgs({
        options: {
            url: { type: 'string' },
            state: { type: 'string' },
            shot: { type: 'string' },
            timeout: { type: 'string', default: '60' },
        },
        allowPositionals: true,
        strict: true,
    }));
} catch (e) {
    console.error(`console: ${e.message}`);
    process.exit(2);
}
const [step, ...args] = positionals;
const waitMs = Number(opts.timeout) * 1000;
const want = { login: 1, add: 3, watch: 1, disable: 1, enable: 1, rotate: 2, rm: 1 };
if (!opts.url || !opts.state || !opts.shot || !(waitMs > 0) || want[step] !== args.length) {
    console.error('usage: node console.mjs --url URL --state FILE --shot PREFIX [--timeout SECONDS] ' +
        '(login TOKEN_FILE | add ID LABEL OUT | watch ID | disable ID | enable ID | rotate ID OUT | rm ID)');
    process.exit(2);
}

let browser;
let finished = false;
const notes = []; // console errors, page errors, failed requests: shown with a failure

async function closeBrowser() {
    if (!browser) return;
    const b = browser;
    browser = undefined;
    await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 10000).unref())]);
}

async function fail(reason) {
    if (finished) return;
    finished = true;
    let msg = `console: FAIL: ${reason}`;
    if (notes.length) msg += `\n--- browser events:\n${notes.join('\n')}`;
    console.error(msg);
    await closeBrowser();
    process.exit(1);
}

const watchdog = setTimeout(() => fail(`did not finish within ${2 * waitMs / 1000} s`), 2 * waitMs);

// The pod's row in the pods table: its first cell is exactly the ID.
function podRow(page, id) {
    return page.locator('#pods tr').filter({ has: page.locator('td:first-child', { hasText: new RegExp(`^${id}$`) }) });
}

// Waits until the live view shows pod id online: its row's online cell (data-online, drawn from
// pod ls --json's "online") turns to yes.
async function waitOnline(page, id) {
    await page.locator(`#pods tr[data-pod="${id}"] td[data-online="yes"]`).waitFor({ timeout: waitMs });
}

// Submits the form, expecting a download: saves it to out (mode 0600) and returns its text.
async function download(page, click, out) {
    const [d] = await Promise.all([page.waitForEvent('download', { timeout: waitMs }), click()]);
    const path = await d.path();
    if (!path) throw new Error(`the download failed: ${await d.failure()}`);
    const text = readFileSync(path, 'utf8');
    if (existsSync(out)) throw new Error(`${out} exists`);
    writeFileSync(out, text, { mode: 0o600 });
    chmodSync(out, 0o600);
    return { name: d.suggestedFilename(), text };
}

async function main() {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30000 });
    const context = await browser.newContext({
        viewport: { width: 1280, height: 900 },
        acceptDownloads: true,
        storageState: step === 'login' ? undefined : opts.state,
    });
    const page = await context.newPage();
    page.setDefaultTimeout(waitMs);
    page.on('console', (m) => m.type() === 'error' && notes.push(`console error: ${m.text()}`));
    page.on('pageerror', (e) => notes.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => notes.push(`request failed: ${r.url()}: ${r.failure()?.errorText}`));
    let navigations = 0;
    page.on('framenavigated', (f) => f === page.mainFrame() && navigations++);
    const out = { result: 'ok', step };

    if (step === 'login') {
        await page.goto(`${opts.url}/login`);
        const token = readFileSync(args[0], 'utf8').trim();
        await page.locator('input[name="token"]').fill(token);
        await Promise.all([page.waitForURL(`${opts.url}/`), page.getByRole('button', { name: 'Log in' }).click()]);
        await page.locator('#pods tr th').first().waitFor();
        const cookies = await context.cookies();
        const c = cookies.find((k) => k.name === 'p2m_console');
        if (!c || !c.httpOnly || c.sameSite !== 'Strict') return fail(`the session cookie: ${JSON.stringify(c)}`);
        if (await page.evaluate(() => document.cookie.includes('p2m_console'))) return fail('the page script can read the cookie');
        await context.storageState({ path: opts.state });
    } else {
        await page.goto(`${opts.url}/`);
        await page.locator('#pods tr th').first().waitFor();
    }
    const id = args[0];

    if (step === 'add') {
        const form = page.locator('form[action="/pod/add"]');
        await form.locator('input[name="id"]').fill(id);
        await form.locator('input[name="labels"]').fill(args[1]);
        const before = navigations;
        const d = await download(page, () => form.getByRole('button').click(), args[2]);
        const j = JSON.parse(d.text);
        if (j.id !== id || !j.secret) return fail(`the download is not pod ${id}'s provisioning file: ${d.name}`);
        out.file = d.name;
        // the live view brings the new row without a reload
        await podRow(page, id).waitFor();
        if (navigations !== before) return fail('the page navigated after the download');
        if ((await page.content()).includes(j.secret)) return fail('the page shows the secret');
    } else if (step === 'watch') {
        await podRow(page, id).waitFor();
        const idle = await page.evaluate(() =>
            [...document.querySelectorAll('#relays tr')].slice(1).reduce((n, r) => n + Number(r.children[5]?.textContent || 0), 0));
        if (idle !== 0) return fail(`the live view shows ${idle} idle pre-connections before the pod started`);
        const before = navigations;
        console.log('watching');
        await waitOnline(page, id);
        if (navigations !== before) return fail('the page reloaded while waiting for the pod');
        out.live = 'no-reload';
    } else if (step === 'disable' || step === 'enable') {
        const row = podRow(page, id);
        await row.getByRole('button', { name: step === 'disable' ? 'Disable' : 'Enable' }).click();
        await page.waitForURL(`${opts.url}/`);
        await podRow(page, id).locator('td', { hasText: new RegExp(`^${step}d$`) }).waitFor();
    } else if (step === 'rotate') {
        const form = podRow(page, id).locator('form[action="/pod/rotate"]');
        await form.locator('input[name="confirm"]').fill(id);
        const d = await download(page, () => form.getByRole('button').click(), args[1]);
        const j = JSON.parse(d.text);
        if (j.id !== id || !j.secret) return fail(`the download is not pod ${id}'s provisioning file: ${d.name}`);
        out.file = d.name;
        // offered once: nothing on the page, nor at the action's URL, shows it again
        if ((await page.content()).includes(j.secret)) return fail('the page shows the new secret');
        const again = await page.evaluate(async (u) => {
            const r = await fetch(u, { credentials: 'same-origin' });
            return { status: r.status, text: await r.text() };
        }, `${opts.url}/pod/rotate`);
        if (again.status === 200 || again.text.includes(j.secret)) return fail(`GET /pod/rotate answered ${again.status} with the file`);
        out.again = again.status;
    } else if (step === 'rm') {
        const form = podRow(page, id).locator('form[action="/pod/rm"]');
        await form.locator('input[name="confirm"]').fill(id);
        await form.getByRole('button', { name: 'Remove' }).click();
        await page.waitForURL(`${opts.url}/`);
        await podRow(page, id).waitFor({ state: 'detached' });
    }

    await page.screenshot({ path: `${opts.shot}-${step}.png`, fullPage: true });
    console.log(Object.entries(out).map(([k, v]) => `${k}=${v}`).join(' '));
}

try {
    await main();
} catch (e) {
    await fail(e.stack || String(e));
}
if (!finished) {
    finished = true;
    clearTimeout(watchdog);
    await closeBrowser();
}
