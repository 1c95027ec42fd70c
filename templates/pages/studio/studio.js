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
  // Forced dark mode as the Gmail app and Outlook do it: colours inverted, images kept.
  style.textContent = body.dataset.dark === "on"
    ? "html{filter:invert(1) hue-rotate(180deg);background:#fff}img{filter:invert(1) hue-rotate(180deg)}"
    : "";
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
}

function syncControls() {
  const body = document.body;
  for (const button of document.querySelectorAll("[data-set-width]")) {
    button.setAttribute("aria-pressed", String(button.dataset.setWidth === body.dataset.width));
  }
  for (const button of document.querySelectorAll("[data-set-tab]")) {
    button.setAttribute("aria-pressed", String(button.dataset.setTab === body.dataset.tab));
  }
  for (const box of document.querySelectorAll("[data-toggle]")) {
    const key = box.dataset.toggle === "dark" ? "dark" : "imagesOff";
    box.checked = body.dataset[key] === "on";
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
  const key = box.dataset.toggle === "dark" ? "dark" : "imagesOff";
  document.body.dataset[key] = box.checked ? "on" : "off";
  applyFrameState();
});

async function refresh(version) {
  const response = await fetch(location.href, { cache: "no-store" });
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
