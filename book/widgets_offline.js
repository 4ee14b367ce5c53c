// Glue between the vendored Jupyter widget HTML manager and this book's offline HTML.
// `make vendor` copies this file next to embed-amd.js; _config.yml (nb_ipywidgets_js) loads it on pages with
// saved widget state, after require.js and before embed-amd.js.
(function () {
  // embed-amd.js finds its font files relative to its RequireJS module URL; without a path for its module
  // name, that URL is relative to the page and the fonts 404. Point the name at this folder.
  var folder = new URL(".", document.currentScript.src).href.replace(/\/$/, "");
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": folder } });

  // ipywidgets typesets widget labels with the MathJax 2 call MathJax.Hub.Queue(["Typeset", hub, element]);
  // the book runs MathJax 3 (on pages with math; its script tag comes earlier in <head> and is deferred),
  // so provide that call once MathJax 3 has started.
  if (!document.querySelector('script[src*="/mathjax/"]')) return;
  window.MathJax = window.MathJax || {};
  var startup = window.MathJax.startup || {};
  window.MathJax.startup = Object.assign({}, startup, {
    ready: function () {
      (startup.ready || function () { window.MathJax.startup.defaultReady(); })();
      window.MathJax.Hub = {
        Queue: function (job) { return window.MathJax.typesetPromise([job[2]]); },
      };
    },
  });
})();
