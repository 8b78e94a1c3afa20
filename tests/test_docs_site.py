"""The documentation site in a real browser (issue 22): `pneumonia_docs` builds it offline from the notebooks, a local
server gives it on 127.0.0.1, and headless Chromium (Debian's, driven by Playwright) opens the home page and an API
page, finds their headings, a rendered plot and working search, and records every request the pages make.
Screenshots land in `_screenshots/` (CI's build artifacts; the README shows copies kept in `nbs/images/`)."""
import functools, http.server, threading
from urllib.parse import urlparse

import pytest

from conftest import ROOT, run_cli

SHOTS = ROOT/'_screenshots'


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The project's site, built by the command a user runs (README left alone), served on a free loopback port."
    out = tmp_path_factory.mktemp('docs')/'_docs'
    built = run_cli('pneumonia_docs', '--out', out, '--no_readme')
    assert f"{out/'index.html'}:" in built.stdout
    handler = functools.partial(type('Quiet', (http.server.SimpleHTTPRequestHandler,), {'log_message': lambda *a: None}), directory=str(out))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_port}'
    server.shutdown(); server.server_close()


@pytest.fixture(scope='module')
def browser(chromium):
    "Debian's Chromium driven by Playwright (Playwright's own browser is a download, impossible offline)."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=['--no-sandbox'])
        yield b
        b.close()


def open_page(browser, url):
    "The page at `url` once the network is idle, with every URL it requested and every request that failed or got an error."
    page = browser.new_page(viewport={'width': 1280, 'height': 900})
    requested, failed = [], []
    page.on('request', lambda r: requested.append(r.url))
    page.on('requestfailed', lambda r: failed.append(r.url))
    page.on('response', lambda r: r.status >= 400 and failed.append(f'{r.status} {r.url}'))
    page.goto(url)
    page.wait_for_load_state('networkidle')
    return page, requested, failed


def texts(page, selector):
    "The text of each element matching `selector`, without the permalink sign MkDocs adds to headings."
    return [t.replace('¶', '').strip() for t in page.locator(selector).all_inner_texts()]


def only_this_host(requested, base):
    return [u for u in requested if urlparse(u).netloc != urlparse(base).netloc and not u.startswith('data:')]


def test_home_page_has_the_readme_headings_its_picture_and_search(site, browser):
    page, requested, failed = open_page(browser, f'{site}/index.html')
    assert texts(page, 'article h1') == ['pneumonia_nb']
    h2 = texts(page, 'article h2')
    assert {'Quick start', 'The protocol', 'Documentation'} <= set(h2), h2
    batch = page.locator('img[src="images/batch.png"]')
    assert batch.evaluate('i => i.complete && i.naturalWidth') > 100
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS/'docs_home.png'))
    page.locator('label.md-search__icon, input.md-search__input').first.click()
    page.keyboard.type('threshold')
    page.wait_for_selector('.md-search-result__item', timeout=10000)
    assert page.locator('.md-search-result__item').count() > 0       # search works, from the site's own index
    assert page.locator('nav.md-nav a[href="evaluate.html"]').count() >= 1   # navigation reaches every notebook's page
    assert only_this_host(requested, site) == [] and failed == [], (only_this_host(requested, site), failed)


def test_api_page_shows_show_doc_entries_and_a_stored_plot(site, browser):
    page, requested, failed = open_page(browser, f'{site}/evaluate.html')
    assert texts(page, 'article h1') == ['Evaluation: an honest test report']
    entry = page.locator('h3#evaluate_run')                                   # show_doc's heading, with nbdev's anchor
    assert entry.count() == 1
    assert 'def evaluate_run(' in page.locator('h3#evaluate_run ~ div.highlight').first.inner_text()
    plots = page.locator('img[src^="evaluate_files/"]')
    assert plots.count() >= 1 and min(plots.evaluate_all('imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)')) > 100
    assert 'show_doc(' not in page.locator('article').inner_text()           # the calls are hidden, as nbdev intends
    page.evaluate("document.getElementById('evaluate_run').scrollIntoView(); window.scrollBy(0, -90)")   # below the fixed header
    page.wait_for_timeout(600)                                                # the header's title finishes its swap
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS/'docs_api.png'))
    assert only_this_host(requested, site) == [] and failed == [], (only_this_host(requested, site), failed)
