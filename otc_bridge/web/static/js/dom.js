// Safe DOM building. Every piece of text from the API or the user goes through
// textContent / setAttribute (never innerHTML or equivalents), so markup in data is shown
// as text and cannot run. Attributes that could carry script (on*, href with javascript:)
// are refused here rather than trusted at each call site.

const FORBIDDEN_ATTR = /^on/i;

/** Create an element: el('p', {class: 'x', id: 'y'}, 'text', childNode, [more]). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

/** Same for SVG elements (the depth chart). */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN_ATTR.test(name) || name === 'style') throw new Error(`refused attribute ${name}`);
    if (name === 'href' && !/^(#|\/(?!\/)|blob:)/.test(String(value))) throw new Error('refused href');
    if (name === 'dataset') {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
}

/** Append text (as text nodes) and nodes; arrays are flattened, null/false skipped. */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace all children of ``node``. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

export const byId = (id) => document.getElementById(id);

/** Show or hide with the hidden attribute (CSS-independent, announced correctly). */
export function show(node, visible) {
  node.hidden = !visible;
}

/**
 * Run ``action`` with ``buttons`` disabled and aria-busy set: no double submit while a
 * request is in flight. Returns whatever ``action`` returns (or throws).
 */
export async function busy(buttons, action) {
  const list = Array.isArray(buttons) ? buttons : [buttons];
  if (list.some((b) => b.dataset.inFlight === '1')) return undefined;
  for (const b of list) {
    b.dataset.inFlight = '1';
    b.disabled = true;
    b.setAttribute('aria-busy', 'true');
  }
  try {
    return await action();
  } finally {
    for (const b of list) {
      delete b.dataset.inFlight;
      b.disabled = false;
      b.removeAttribute('aria-busy');
    }
  }
}

/** A copy-to-clipboard button for ``getText()``; falls back to selecting ``target``. */
export function copyButton(label, getText, target) {
  const button = el('button', {type: 'button', class: 'secondary small'}, label);
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(getText());
      flash(button, 'Copied');
    } catch {
      if (target && target.select) target.select();
      flash(button, 'Select and copy (Ctrl+C)');
    }
  });
  return button;
}

function flash(button, text) {
  const original = button.textContent;
  button.textContent = text;
  setTimeout(() => { button.textContent = original; }, 1500);
}

/** Offer ``text`` as a file download (a Blob URL; nothing leaves the browser). */
export function download(filename, text) {
  const url = URL.createObjectURL(new Blob([text], {type: 'text/plain'}));
  const link = el('a', {href: url, download: filename, class: 'visually-hidden'}, filename);
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A labelled form field: returns {wrap, input}. ``hint`` becomes aria-describedby. */
export function field(id, label, input, hint) {
  input.id = id;
  const parts = [el('label', {for: id}, label), input];
  if (hint) {
    const hintNode = el('p', {class: 'hint', id: `${id}-hint`}, hint);
    input.setAttribute('aria-describedby', hintNode.id);
    parts.push(hintNode);
  }
  parts.push(el('p', {class: 'field-error', id: `${id}-error`, hidden: true}));
  return {wrap: el('div', {class: 'field'}, parts), input};
}

/** Short form of a long hex string for tables ("RTC1a2b…9f0e"); full text in the title. */
export function short(text, head = 8, tail = 4) {
  if (typeof text !== 'string') return '';
  return text.length > head + tail + 1 ? `${text.slice(0, head)}…${text.slice(-tail)}` : text;
}
