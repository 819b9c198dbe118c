"""docs/serve.png: the vcap serve page after captioning one clip, in headless Chromium driven by Playwright.

    python docs/serve_screenshot.py MODEL CLIP docs/serve.png
"""
import sys, threading, time, tempfile
import uvicorn
from playwright.sync_api import sync_playwright
from vcap.pipeline.config import ServeConfig
from vcap.pipeline.serve import create_app

model, clip, out = sys.argv[1:4]
app = create_app(ServeConfig(model=model, workers=0))
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=8765, log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.05)
with sync_playwright() as p:
    browser = p.chromium.launch_persistent_context(tempfile.mkdtemp(), executable_path="/usr/bin/chromium",
        headless=True, viewport={"width": 900, "height": 760},
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run"])
    page = browser.new_page()
    page.goto("http://127.0.0.1:8765/")
    page.set_input_files("#file", clip)
    page.wait_for_selector("#status[data-state=done]", timeout=60000)
    page.wait_for_function("document.getElementById('info').textContent.length > 0")
    page.screenshot(path=out)
    browser.close()
server.should_exit = True
