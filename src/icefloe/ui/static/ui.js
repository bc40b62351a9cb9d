// icefloe web UI: the one script. Pages work without it; it only tails a running job's log.
"use strict";
(function () {
  const log = document.getElementById("log");
  if (!log || log.dataset.live !== "yes") return;
  let offset = Number(log.dataset.offset || 0);
  const status = document.getElementById("run-status");
  async function poll() {
    try {
      const answer = await fetch(`/ui/runs/${encodeURIComponent(log.dataset.run)}/log?offset=${offset}`,
                                 { credentials: "same-origin", headers: { accept: "application/json" } });
      if (!answer.ok) return;
      const data = await answer.json();
      if (data.content) {
        const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.append(document.createTextNode(data.content));  // text, never markup
        if (atBottom) log.scrollTop = log.scrollHeight;
      }
      offset = data.next_offset;
      if (status) status.textContent = data.status.replace("ENGINE_", "");
      if (data.active || offset < data.size) setTimeout(poll, 1000);
      else location.reload();  // the run ended: show its final facts (status, times)
    } catch (e) {
      setTimeout(poll, 3000);
    }
  }
  setTimeout(poll, 1000);
})();
