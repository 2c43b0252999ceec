// Shared by every page: a form marked data-confirm asks before it changes anything.
"use strict";
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
