// Real-browser check of the demo: headless Chromium (Debian's package)
// driven by playwright-core. Run through `scripts/browser-check`, which
// starts the demo on spare ports first. Exits non-zero on the first
// expectation that fails.
const { chromium } = require('playwright-core');
const assert = require('node:assert/strict');

const PORT = process.env.PROXY_PORT;
const APP = `http://app.localhost:${PORT}`;
const EVIL = 'http://evil.localhost:1/';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const text = async (page) => (await page.textContent('body')).replace(/\s+/g, ' ');
const step = (what) => console.log(`ok - ${what}`);

async function login(ctx, who) {
  const page = await ctx.newPage();
  await page.goto(`${APP}/hello?x=1`);
  assert.match(page.url(), /\/oauth2\/default\/v1\/authorize\?/, 'an unauthenticated browser is sent to the IdP');
  await Promise.all([page.waitForURL(`${APP}/hello?x=1`), page.click(`button:has-text("${who}")`)]);
  return page;
}

(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
  try {
    // Alice: engineering + mfa.
    let ctx = await browser.newContext();
    let page = await login(ctx, 'Alice Anderson');
    assert.match(await text(page), /Hello, alice@example\.com/);
    step('login lands on the page first asked for, query kept, identity headers at the app');
    const cookies = await ctx.cookies();
    const app = cookies.find((c) => c.name === 'CF_Authorization');
    assert.ok(app, 'app cookie set');
    assert.equal(app.domain, 'app.localhost', 'host-only app cookie');
    assert.ok(app.httpOnly && app.sameSite === 'Lax', 'HttpOnly, SameSite=Lax');
    step('app cookie is host-only, HttpOnly, SameSite=Lax');
    let r = await page.goto(`${APP}/admin`);
    assert.equal(r.status(), 200, 'alice may see /admin');
    r = await page.goto(`${APP}/cdn-cgi/access/get-identity`);
    const id = JSON.parse(await page.textContent('body'));
    assert.equal(id.email, 'alice@example.com');
    assert.deepEqual(id.amr, ['pwd', 'mfa', 'otp']);
    step('group + mfa policy admits alice; get-identity answers her identity');

    // Logout CSRF: a link and an auto-submitting form on another site.
    await page.route(EVIL, (route) => route.fulfill({ contentType: 'text/html',
      body: `<a id="x" href="${APP}/cdn-cgi/access/logout">prize</a>` }));
    await page.goto(EVIL);
    await Promise.all([page.waitForURL(`${APP}/cdn-cgi/access/logout`), page.click('#x')]);
    assert.match(await text(page), /Do you want to sign out\?/);
    r = await page.goto(`${APP}/hello`);
    assert.equal(page.url(), `${APP}/hello`, 'a cross-site logout link signs nobody out');
    await page.route(`${EVIL}post`, (route) => route.fulfill({ contentType: 'text/html',
      body: `<form id="f" method="post" action="${APP}/cdn-cgi/access/logout"></form><script>f.submit()</script>` }));
    await page.goto(`${EVIL}post`);
    await page.waitForLoadState('load');
    r = await page.goto(`${APP}/hello`);
    // SameSite=Lax keeps the session cookie off a cross-site POST: the POST
    // clears this host's app cookies (DESIGN: a POST logs out) but cannot
    // revoke the session, so the next visit is signed in again through it.
    assert.equal(page.url(), `${APP}/hello`, 'a cross-site logout POST revokes no session');
    step('cross-site logout: a link gets a confirmation; an auto-submitted form revokes no session');
    await page.goto(EVIL);
    await Promise.all([page.waitForURL(`${APP}/cdn-cgi/access/logout`), page.click('#x')]);
    await Promise.all([page.waitForLoadState('load'), page.click('button:has-text("Sign out")')]);
    assert.match(await text(page), /You have been signed out/);
    await page.goto(`${APP}/hello`);
    assert.match(page.url(), /\/oauth2\/default\/v1\/authorize\?/, 'signed out: back to the IdP');
    step('the confirmation button signs out; the next request goes to the IdP');
    await ctx.close();

    // Bob: sales, no mfa.
    ctx = await browser.newContext();
    page = await login(ctx, 'Bob Baker');
    r = await page.goto(`${APP}/admin`);
    assert.equal(r.status(), 403, 'bob may not see /admin');
    step('a user outside the policy gets 403');
    await ctx.close();
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(`not ok - ${e.message}`); process.exit(1); });
