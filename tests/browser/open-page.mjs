// Opens a pipe2me consumer URL in Debian's headless Chromium, driven by playwright-core, as a
// person's browser would, and checks that the page renders: either through the registrar's 307 to a
// consumer port, or straight through the relay's SNI port with no redirect.
//
//   node open-page.mjs --url URL --expect TEXT --screenshot FILE.png [--chain 307,200|200]
//                      [--first URL]... [--timeout SECONDS]
//   node open-page.mjs --url URL --expect-error REGEX [--timeout SECONDS]
//
// The first form passes when the main-frame navigation is the status chain --chain (default
// 307,200): with 307,200 exactly one 307 (from the port of URL) followed by a 200 from the host and
// port named in its Location; with 200 a 200 from URL itself, no redirect. Every response comes
// from a loopback address, and TEXT is visible on the rendered page; a PNG screenshot goes to FILE.
// Each --first URL is visited before, in the same browser context (so its connections can be
// reused, as a person's earlier tab would leave them), and must answer 200: as a page, or as a
// download (a certificate served as application/x-pem-file), reported as certificate or other
// with its size. The second form passes when the navigation fails with an error matching REGEX
// (for example ERR_CERT_AUTHORITY_INVALID when the CA is not trusted).
//
// Certificates are verified as usual: Chromium on Linux trusts the CAs in the NSS database
// $HOME/.pki/nssdb, so the caller chooses what is trusted by choosing HOME. Nothing here turns
// certificate checks off. Playwright gives the browser a fresh profile under TMPDIR and removes it.
//
// Prints one line `result=ok key=value ...` (or `result=expected-error ...`) on stdout and exits 0;
// on any failure prints `open-page: FAIL: reason` on stderr and exits 1. The whole run is bounded by
// --timeout (default 60 s) and the browser is always closed.
import { parseArgs } from 'node:util';
import { readFileSync, statSync } from 'node:fs';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-quic',
    '--no-first-run',
    '--disable-component-update',
    '--disable-sync',
];

function usage() {
    return 'usage: node open-page.mjs --url URL (--expect TEXT --screenshot FILE.png [--chain 307,200|200] [--first URL]... | --expect-error REGEX) [--timeout SECONDS]';
}

let opts;
try {
    opts = parseArgs({
        options: {
            url: { type: 'string' },
            expect: { type: 'string' },
            screenshot: { type: 'string' },
            'expect-error': { type: 'string' },
            chain: { type: 'string', default: '307,200' },
            first: { type: 'string', multiple: true, default: [] },
            timeout: { type: 'string', default: '60' },
        },
        strict: true,
    }).values;
} catch (e) {
    console.error(`open-page: ${e.message}\n${usage()}`);
    process.exit(2);
}
const negative = opts['expect-error'] !== undefined;
const timeoutS = Number(opts.timeout);
if (!opts.url || !(timeoutS > 0) || (negative ? opts.expect || opts.screenshot || opts.first.length : !opts.expect || !opts.screenshot) ||
    !['307,200', '200'].includes(opts.chain)) {
    console.error(usage());
    process.exit(2);
}
function parseUrl(u) {
    try {
        return new URL(u);
    } catch {
        console.error(`open-page: not a URL: ${u}`);
        process.exit(2);
    }
}
const start = parseUrl(opts.url);
const firsts = opts.first.map(parseUrl);

// key=value, the value quoted (JSON) when it has spaces, quotes or is empty.
function kv(pairs) {
    return Object.entries(pairs)
        .map(([k, v]) => {
            const s = String(v ?? '');
            return `${k}=${s === '' || /[\s"'\\]/.test(s) ? JSON.stringify(s) : s}`;
        })
        .join(' ');
}
function portOf(u) {
    return u.port || (u.protocol === 'https:' ? '443' : '80');
}
function isLoopback(ip) {
    return /^127\./.test(ip) || ip === '::1' || ip === '[::1]';
}

let browser;
let finished = false;
const notes = []; // console errors, page errors and failed requests: shown with a failure

async function closeBrowser() {
    if (!browser) return;
    const b = browser;
    browser = undefined;
    // close() can hang on a wedged browser: give it 10 s, then let the process exit kill it.
    await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 10000).unref())]);
}

async function fail(reason) {
    if (finished) return;
    finished = true;
    let msg = `open-page: FAIL: ${reason}`;
    if (notes.length) msg += `\n--- browser events:\n${notes.join('\n')}`;
    console.error(msg);
    await closeBrowser();
    process.exit(1);
}

const watchdog = setTimeout(() => fail(`did not finish within ${timeoutS} s`), timeoutS * 1000);

async function main() {
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ARGS,
        timeout: 30000,
    });
    const context = await browser.newContext({ viewport: { width: 1024, height: 640 }, acceptDownloads: true });
    const page = await context.newPage();
    page.setDefaultTimeout(Math.min(30000, timeoutS * 1000));
    page.on('console', (m) => m.type() === 'error' && notes.push(`console error: ${m.text()}`));
    page.on('pageerror', (e) => notes.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => notes.push(`request failed: ${r.url()}: ${r.failure()?.errorText}`));

    // The earlier visits, in the same context: a page answers 200, or the URL is a download.
    const firstSeen = [];
    for (const u of firsts) {
        const downloading = page.waitForEvent('download', { timeout: 30000 }).catch(() => null);
        let r = null;
        let err = null;
        try {
            r = await page.goto(u.href, { waitUntil: 'load' });
        } catch (e) {
            err = e.message.split('\n')[0];
        }
        if (r) {
            if (r.status() !== 200) return fail(`the earlier visit to ${u.href} answered ${r.status()}, want 200`);
            firstSeen.push(`${u.href}:page`);
            continue;
        }
        if (!/Download is starting/.test(err ?? '')) return fail(`the earlier visit to ${u.href} failed: ${err ?? 'no response'}`);
        const d = await downloading;
        if (!d) return fail(`the earlier visit to ${u.href} started a download that never came`);
        const path = await d.path().catch(() => null);
        if (!path) return fail(`the download of ${u.href} failed: ${await d.failure()}`);
        const text = readFileSync(path, 'utf8');
        if (!text.length) return fail(`the download of ${u.href} is empty`);
        const kind = /^-----BEGIN CERTIFICATE-----\n/.test(text) ? 'certificate' : 'other';
        firstSeen.push(`${u.href}:download:${kind}:${text.length}B`);
    }
    const pageEvents = [];
    page.on('response', (r) => {
        if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) pageEvents.push(r);
    });

    let response;
    try {
        response = await page.goto(start.href, { waitUntil: 'load' });
    } catch (e) {
        const text = e.message.split('\n')[0];
        if (negative) {
            if (new RegExp(opts['expect-error']).test(text)) {
                console.log(kv({ result: 'expected-error', url: start.href, error: text }));
                return;
            }
            return fail(`navigation failed, but not with /${opts['expect-error']}/: ${text}`);
        }
        return fail(`navigation to ${start.href} failed: ${text}`);
    }
    if (negative) {
        return fail(`navigation to ${start.href} succeeded (status ${response?.status()} from ${page.url()}); want an error matching /${opts['expect-error']}/`);
    }
    if (!response) return fail(`navigation to ${start.href} returned no response`);

    // The chain as Playwright links it: the final response's request, back through redirectedFrom.
    const chain = [];
    for (let req = response.request(); req; req = req.redirectedFrom()) chain.unshift(req);
    const hops = [];
    for (const req of chain) {
        const r = await req.response();
        if (!r) return fail(`no response recorded for ${req.url()}`);
        hops.push({ url: r.url(), status: r.status(), headers: await r.allHeaders(), addr: await r.serverAddr(), tls: await r.securityDetails() });
    }
    const statuses = hops.map((h) => h.status).join(',');
    const describe = hops.map((h) => `${h.status} ${h.url}${h.headers.location ? ` -> ${h.headers.location}` : ''}`).join('; ');
    const seenStatuses = pageEvents.map((r) => r.status()).join(',');
    if (statuses !== opts.chain) return fail(`want the status chain ${opts.chain}, got ${statuses} (${describe})`);
    if (seenStatuses !== statuses) return fail(`the response events (${seenStatuses}) disagree with the redirect chain (${statuses})`);

    const redirect = hops.length === 2 ? hops[0] : null;
    const final = hops[hops.length - 1];
    const finalUrl = new URL(final.url);
    let location = finalUrl;
    if (redirect) {
        const startHop = new URL(redirect.url);
        if (startHop.host !== start.host) return fail(`the 307 came from ${startHop.host}, not from ${start.host}`);
        if (!redirect.headers.location) return fail('the 307 has no Location header');
        location = new URL(redirect.headers.location, redirect.url);
        if (location.href !== finalUrl.href) return fail(`the 307 sent the browser to ${location.href}, but the page came from ${finalUrl.href}`);
        if (location.hostname !== start.hostname) return fail(`the 307 names host ${location.hostname}, want ${start.hostname}`);
        if (portOf(location) === portOf(start)) return fail(`the 307 names the registrar's own port ${portOf(start)}, not a consumer port`);
        if (location.pathname !== start.pathname) return fail(`the 307 changed the path from ${start.pathname} to ${location.pathname}`);
    } else if (finalUrl.href !== start.href) {
        return fail(`the page came from ${finalUrl.href}, want ${start.href} itself (no redirect)`);
    }
    for (const h of hops) {
        if (!h.addr) return fail(`no server address recorded for ${h.url}`);
        if (!isLoopback(h.addr.ipAddress)) return fail(`${h.url} was served from ${h.addr.ipAddress}, not a loopback address`);
        if (String(h.addr.port) !== portOf(new URL(h.url))) return fail(`${h.url} was served from port ${h.addr.port}`);
    }
    if (start.protocol === 'https:' && hops.some((h) => !h.tls)) return fail('no TLS details for an https response');

    // Rendered: the load event fired (goto waited for it) and the text is visible on the page.
    try {
        await page.getByText(opts.expect, { exact: false }).first().waitFor({ state: 'visible', timeout: 10000 });
    } catch {
        const body = (await page.locator('body').innerText().catch(() => '')).slice(0, 2000);
        return fail(`the page at ${page.url()} does not show ${JSON.stringify(opts.expect)}; its text is:\n${body}`);
    }
    const title = await page.title();
    await page.screenshot({ path: opts.screenshot, fullPage: true });
    let size = 0;
    try {
        size = statSync(opts.screenshot).size;
    } catch {}
    if (size === 0) return fail(`the screenshot ${opts.screenshot} was not written`);

    console.log(kv({
        result: 'ok',
        status_chain: statuses,
        start_url: start.href,
        location: location.href,
        final_url: page.url(),
        server: `${final.addr.ipAddress}:${final.addr.port}`,
        title,
        redirect_tls_subject: redirect?.tls?.subjectName,
        tls_subject: final.tls?.subjectName,
        tls_issuer: final.tls?.issuer,
        tls_protocol: final.tls?.protocol,
        screenshot_bytes: size,
        browser: `chromium/${browser.version()}`,
        first: firstSeen.join(','),
    }));
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
