// The step page's Content-Security-Policy allows style elements only when they carry this
// response's nonce. xterm.js writes its cell sizes and theme into style elements it creates and
// has no nonce option, so every style element created on this page gets the nonce at creation,
// before it is inserted (a nonce set later does not count). Loaded before the terminal bundle.
"use strict";

(() => {
  const nonce = document.querySelector('meta[name="style-nonce"]')?.content;
  if (!nonce) return;
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (name, options) {
    const element = create.call(this, name, options);
    if (String(name).toLowerCase() === "style") element.setAttribute("nonce", nonce);
    return element;
  };
})();
