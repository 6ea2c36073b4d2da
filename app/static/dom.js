// Tiny DOM helpers. Text is only ever inserted as text: nothing here (or anywhere in the
// page) assigns innerHTML, so a message like `<img src=x onerror=...>` stays characters.

/**
 * Create an element: h('li', {class: 'msg', dataset: {id}, onclick: fn}, child, 'text', ...)
 * Attribute values go through setAttribute; `on*` keys become event listeners.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

// Explicit bidi embeddings, overrides and isolates (U+202A-202E, U+2066-2069): in chat
// text they make "txt.exe" look like "exe.txt" or a link read as another. Rendered
// text never carries them; the element's own dir="auto" still handles RTL text.
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/g;

/** `text` without explicit direction controls (what the page renders of a message). */
export function neutral(text) {
  return text.replace(BIDI_CONTROLS, '');
}

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?)\]}'"]+$/;

/**
 * Text with its http(s) links turned into <a> elements, as a DocumentFragment.
 * Only http: and https: URLs that parse become links; everything else stays text.
 */
export function linkify(text) {
  text = neutral(text);
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    let raw = match[0];
    const trail = raw.match(TRAILING);
    // Keep a closing bracket that belongs to the URL, e.g. wiki/Foo_(bar).
    if (trail && !(trail[0] === ')' && raw.includes('('))) raw = raw.slice(0, -trail[0].length);
    let url = null;
    try { url = new URL(raw); } catch { url = null; }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) continue;
    if (match.index > last) frag.append(document.createTextNode(text.slice(last, match.index)));
    const a = document.createElement('a');
    a.href = url.href;
    a.textContent = raw;
    a.target = '_blank';
    a.rel = 'noopener noreferrer nofollow';
    frag.append(a);
    last = match.index + raw.length;
  }
  if (last < text.length) frag.append(document.createTextNode(text.slice(last)));
  return frag;
}

/** A stable small number for a string (avatar colours). */
export function hue(str, buckets = 8) {
  let n = 0;
  for (const ch of String(str || '')) n = (n * 31 + ch.codePointAt(0)) >>> 0;
  return n % buckets;
}

export function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const first = parts[0] ? [...parts[0]][0] : '?';
  const second = parts.length > 1 ? [...parts[parts.length - 1]][0] : '';
  return (first + second).toUpperCase();
}

/** Server timestamps may be seconds, milliseconds or ISO strings. */
export function toDate(ts) {
  if (typeof ts === 'number') return new Date(ts < 1e12 ? ts * 1000 : ts);
  if (typeof ts === 'string') { const d = new Date(ts); if (!Number.isNaN(d.getTime())) return d; }
  return new Date();
}

export function formatTime(date) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}
