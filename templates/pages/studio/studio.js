// The studio's only script, served by the app: view toggles, and following changes live.
// The page polls /live for a fingerprint of the templates, config and store; when it
// changes, the page's #live part is fetched again and swapped in, keeping the view state
// (width, tab, dark mode, images) that lives on <body>.
"use strict";

const POLL_MS = 500;

function emailDocument() {
  const frame = document.getElementById("email");
  return frame && frame.contentDocument;
}

const DARK_QUERY = /\(\s*prefers-color-scheme\s*:\s*dark\s*\)/i;

// The email's own dark palette: the rules of its `prefers-color-scheme: dark` blocks, taken
// out of their media query (what is left of it, such as a width, is kept), as a reader's
// client applies them when it prefers dark. Empty when the email has no such block.
function darkPalette(doc) {
  const rules = [];
  const visit = (list) => {
    for (const rule of list) {
      if (!rule.media || !rule.cssRules) continue; // not an @media rule
      const query = Array.from(rule.media).find((q) => DARK_QUERY.test(q));
      if (query === undefined) {
        visit(rule.cssRules);
        continue;
      }
      const inner = Array.from(rule.cssRules, (r) => r.cssText).join("\n");
      const rest = query
        .replace(/\s+and\s+\(\s*prefers-color-scheme\s*:\s*dark\s*\)/i, "")
        .replace(/\(\s*prefers-color-scheme\s*:\s*dark\s*\)(\s+and\s+)?/i, "")
        .trim();
      rules.push(rest ? `@media ${rest} {\n${inner}\n}` : inner);
    }
  };
  for (const sheet of Array.from(doc.styleSheets)) {
    try {
      visit(sheet.cssRules);
    } catch (error) {
      // A sheet from elsewhere cannot be read (the email's CSP loads none anyway).
    }
  }
  if (!rules.length) return "";
  // An email declaring `color-scheme: light dark` also gets the client's dark canvas.
  const scheme = doc.defaultView.getComputedStyle(doc.documentElement).colorScheme;
  return (scheme.includes("dark") ? ":root { color-scheme: dark; }\n" : "") + rules.join("\n");
}

function applyFrameState() {
  const doc = emailDocument();
  if (!doc || !doc.documentElement) return;
  const body = document.body;
  let style = doc.getElementById("studio-emulation");
  if (!style) {
    style = doc.createElement("style");
    style.id = "studio-emulation";
    (doc.head || doc.documentElement).appendChild(style);
  }
  // Read the palette with the emulation off, so it never reads its own copy.
  style.textContent = "";
  const palette = body.dataset.dark === "on" ? darkPalette(doc) : "";
  style.textContent = palette;
  const note = document.getElementById("dark-note");
  if (note) {
    note.textContent = body.dataset.dark === "on" && !palette
      ? "This email has no prefers-color-scheme: dark rules: readers in dark mode see it " +
        "light, or as their client darkens it."
      : "";
  }
  for (const img of doc.querySelectorAll("img")) {
    if (body.dataset.imagesOff === "on") {
      if (img.hasAttribute("src")) {
        img.dataset.studioSrc = img.getAttribute("src");
        img.removeAttribute("src");
      }
    } else if (img.dataset.studioSrc !== undefined) {
      img.setAttribute("src", img.dataset.studioSrc);
      delete img.dataset.studioSrc;
    }
  }
  applyClickMap(doc);
}

// The click map: each link of a sent email labelled with its share of the edition's clicks,
// read from the page's own table of clicks per link (the report's numbers).
const CLICKMAP_STYLE =
  ".studio-clickmap { display: inline-block; margin: 0 .25em; padding: 0 .35em; " +
  "font: 700 13px/1.5 sans-serif; background: #1c1c1c; color: #fff; border-radius: 3px; " +
  "text-decoration: none; } .studio-clickmap-link { outline: 2px dashed #1c1c1c; }";

function applyClickMap(doc) {
  for (const old of doc.querySelectorAll(".studio-clickmap, #studio-clickmap-style")) old.remove();
  for (const link of doc.querySelectorAll(".studio-clickmap-link")) {
    link.classList.remove("studio-clickmap-link");
  }
  if (document.body.dataset.clickmap !== "on") return;
  const shares = new Map();
  for (const row of document.querySelectorAll("table.link-clicks tr[data-url]")) {
    shares.set(row.dataset.url, row.dataset.share);
  }
  const style = doc.createElement("style");
  style.id = "studio-clickmap-style";
  style.textContent = CLICKMAP_STYLE;
  (doc.head || doc.documentElement).appendChild(style);
  for (const link of doc.querySelectorAll("a[href]")) {
    const share = shares.get(link.getAttribute("href"));
    if (share === undefined) continue;
    const badge = doc.createElement("span");
    badge.className = "studio-clickmap";
    badge.textContent = share;
    link.classList.add("studio-clickmap-link");
    link.insertAdjacentElement("afterend", badge);
  }
}

const TOGGLES = { dark: "dark", "images-off": "imagesOff", clickmap: "clickmap" };

function syncControls() {
  const body = document.body;
  for (const button of document.querySelectorAll("[data-set-width]")) {
    button.setAttribute("aria-pressed", String(button.dataset.setWidth === body.dataset.width));
  }
  for (const button of document.querySelectorAll("[data-set-tab]")) {
    button.setAttribute("aria-pressed", String(button.dataset.setTab === body.dataset.tab));
  }
  for (const box of document.querySelectorAll("[data-toggle]")) {
    box.checked = body.dataset[TOGGLES[box.dataset.toggle]] === "on";
  }
  const frame = document.getElementById("email");
  if (frame) frame.addEventListener("load", applyFrameState);
  applyFrameState();
}

document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-set-width], [data-set-tab]");
  if (!target) return;
  if (target.dataset.setWidth) document.body.dataset.width = target.dataset.setWidth;
  if (target.dataset.setTab) document.body.dataset.tab = target.dataset.setTab;
  syncControls();
});

document.addEventListener("change", (event) => {
  const box = event.target.closest("[data-toggle]");
  if (!box) return;
  document.body.dataset[TOGGLES[box.dataset.toggle]] = box.checked ? "on" : "off";
  applyFrameState();
});

// A form the studio refused answers with the page it came from (at the form's address):
// the page names its own address, which the address bar and each refresh then use.
const here = document.body.dataset.here;
if (here && here !== location.pathname + location.search) history.replaceState(null, "", here);

async function refresh(version) {
  const response = await fetch(here || location.href, { cache: "no-store" });
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("live");
  if (!fresh) return;
  document.getElementById("live").replaceWith(fresh);
  document.title = page.title;
  document.body.dataset.version = version;
  syncControls();
}

async function poll() {
  const status = document.getElementById("live-status");
  try {
    const response = await fetch("/live", { cache: "no-store" });
    const { version } = await response.json();
    if (version !== document.body.dataset.version) await refresh(version);
    status.textContent = "live";
    status.classList.remove("offline");
  } catch (error) {
    status.textContent = "studio not reachable";
    status.classList.add("offline");
  }
  setTimeout(poll, POLL_MS);
}

syncControls();
setTimeout(poll, POLL_MS);
