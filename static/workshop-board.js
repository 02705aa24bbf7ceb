// The workshop board redraws from server-sent events: the server renders the rows (escaped by
// its templates) and sends them whole; without scripts the page is a snapshot to reload.
(function () {
  "use strict";
  var board = document.getElementById("workshop-board");
  if (!board || !window.EventSource) {
    return;
  }
  var source = new EventSource(board.getAttribute("data-events"));
  source.addEventListener("board", function (event) {
    board.innerHTML = event.data;
    board.setAttribute("data-updated", String(Date.now()));
  });
})();
