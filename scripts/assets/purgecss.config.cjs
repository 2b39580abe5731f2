// Which of Bootstrap's rules Hangar's pages use (scripts/build-assets.sh): every class
// name found in the templates, the page scripts and the Python that writes class names,
// plus the families a template or view builds at run time ("text-bg-{{ tone }}") and the
// classes Bootstrap's own scripts add (collapse, dropdown).
module.exports = {
  content: [
    "templates/**/*.html",
    "static/hangar/*.js",
    "compute/**/*.py",
    "workspace/**/*.py",
    "config/**/*.py",
  ],
  safelist: {
    standard: [
      "show", "showing", "hiding", "collapse", "collapsing", "collapse-horizontal",
      "dropdown-menu-end", "dropdown-menu-start", "active", "disabled", "fade",
      "is-invalid", "is-valid", "was-validated", "visually-hidden",
    ],
    greedy: [
      /^text-bg-/, /^bg-/, /^text-/, /^alert-/, /^btn-/, /^border-/, /^badge/, /^table-/,
      /^progress/, /^link-/, /^navbar/, /^dropdown/, /^placeholder/, /^spinner/,
      /data-bs-popper/, /^col-/, /^row-cols/,
    ],
  },
};
