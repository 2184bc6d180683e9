// latentpath report: the latent-space explorers. Each draws its encoded windows as a
// scatter; hovering over a point shows its window, its reconstruction and its place on
// its frame, and a click keeps that point shown until another is clicked.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const loaded = new Map();  // data URL -> Image, decoded once

  function image(url) {
    if (!loaded.has(url)) {
      const img = new Image();
      img.src = url;
      loaded.set(url, img.decode().then(() => img));
    }
    return loaded.get(url);
  }

  function diverging(value, limit) {
    // blue (-limit) through light gray (0) to red (+limit)
    if (value === null) return "#bbbbbb";
    const t = Math.max(-1, Math.min(1, value / limit));
    const mix = (a, b) => Math.round(a + (b - a) * Math.abs(t));
    return t < 0 ? `rgb(${mix(220, 33)},${mix(220, 102)},${mix(220, 172)})`
                 : `rgb(${mix(220, 178)},${mix(220, 24)},${mix(220, 43)})`;
  }

  function colourOf(scale, value) {
    if (scale.kind === "value") return diverging(value, scale.limit);
    const i = scale.names.indexOf(value);
    return i < 0 ? "#bbbbbb" : scale.colours[i];
  }

  function legend(box, scale) {
    if (scale.kind === "value") {
      box.innerHTML = `<span><i style="background:${diverging(-scale.limit, scale.limit)}"></i>` +
        `${scale.name} -${scale.limit.toPrecision(2)}</span><span><i style="background:` +
        `${diverging(0, 1)}"></i>0</span><span><i style="background:` +
        `${diverging(scale.limit, scale.limit)}"></i>+${scale.limit.toPrecision(2)}</span>`;
      return;
    }
    box.innerHTML = scale.names.map((n, i) =>
      `<span><i style="background:${scale.colours[i]}"></i>${n}</span>`).join("") +
      `<span><i style="background:#bbbbbb"></i>other</span>`;
  }

  async function drawCell(canvas, url, index, ex) {
    const img = await image(url);
    const c = ex.cell, zoom = Math.max(2, Math.floor(96 / c));
    canvas.width = canvas.height = c * zoom;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    const col = index % ex.cols, row = Math.floor(index / ex.cols);
    ctx.drawImage(img, col * c, row * c, c, c, 0, 0, c * zoom, c * zoom);
  }

  async function drawFrame(canvas, ex, p, i) {
    const img = await image(data.frames[p.frame[i]]);
    canvas.width = img.width;
    canvas.height = img.height;
    canvas.style.width = `${Math.max(img.width, 384)}px`;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const scale = img.width / data.frame_shape[1], side = ex.window_px * scale;
    ctx.strokeStyle = "#ff2d2d";
    ctx.lineWidth = 2;
    ctx.strokeRect(p.x[i] * scale - side / 2, p.y[i] * scale - side / 2, side, side);
  }

  function setup(root, ex) {
    const canvas = root.querySelector(".scatter"), ctx = canvas.getContext("2d");
    const p = ex.points, n = p.z1.length, pad = 24;
    const lo1 = Math.min(...p.z1), hi1 = Math.max(...p.z1);
    const lo2 = Math.min(...p.z2), hi2 = Math.max(...p.z2);
    const sx = (v) => pad + (v - lo1) / ((hi1 - lo1) || 1) * (canvas.width - 2 * pad);
    const sy = (v) => canvas.height - pad - (v - lo2) / ((hi2 - lo2) || 1) * (canvas.height - 2 * pad);
    const px = p.z1.map(sx), py = p.z2.map(sy);
    let pinned = -1, shown = -1;
    legend(root.querySelector(".legend"), ex.scale);

    function draw(mark) {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.fillStyle = "#555";
      ctx.font = "12px system-ui, sans-serif";
      ctx.fillText("z1", canvas.width - pad, canvas.height - 6);
      ctx.fillText("z2", 4, pad - 8);
      for (let i = 0; i < n; i++) {
        ctx.fillStyle = colourOf(ex.scale, p.value[i]);
        ctx.fillRect(px[i] - 2, py[i] - 2, 4, 4);
      }
      if (mark >= 0) {
        ctx.strokeStyle = "#000";
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.arc(px[mark], py[mark], 7, 0, 2 * Math.PI);
        ctx.stroke();
      }
    }

    function nearest(event) {
      const r = canvas.getBoundingClientRect();
      const x = (event.clientX - r.left) * canvas.width / r.width;
      const y = (event.clientY - r.top) * canvas.height / r.height;
      let best = -1, bestD = 100;  // within 10 canvas pixels
      for (let i = 0; i < n; i++) {
        const d = (px[i] - x) ** 2 + (py[i] - y) ** 2;
        if (d < bestD) { best = i; bestD = d; }
      }
      return best;
    }

    async function show(i) {
      if (i < 0 || i === shown) return;
      shown = i;
      draw(i);
      const value = ex.scale.kind === "value" && p.value[i] !== null
        ? p.value[i].toFixed(3) : p.value[i];
      root.querySelector(".info").textContent =
        `window ${i}: frame ${p.frame[i]}, y ${p.y[i].toFixed(1)} px, x ${p.x[i].toFixed(1)} px; ` +
        `z1 ${p.z1[i].toFixed(2)}, z2 ${p.z2[i].toFixed(2)}; ${ex.scale.name}: ${value}`;
      // the panels are laid out at once, then drawn as their images decode, so that a
      // newer point's call cannot interleave with this one's
      const cells = root.querySelector(".cells");
      cells.innerHTML = "";
      const labels = ex.channels > 1 ? ["t", "t + d"] : [""];
      const drawn = [];
      for (const kind of ["window", "decoded"]) {
        for (let c = 0; c < ex.channels; c++) {
          const fig = document.createElement("figure");
          const cell = document.createElement("canvas");
          cell.className = `cell-${kind}`;
          const cap = document.createElement("figcaption");
          cap.textContent = `${kind === "window" ? "window" : "reconstruction"} ${labels[c]}`;
          fig.append(cell, cap);
          cells.append(fig);
          drawn.push(drawCell(cell, ex.sprites[kind][c], i, ex));
        }
      }
      drawn.push(drawFrame(root.querySelector(".frame"), ex, p, i));
      await Promise.all(drawn);
      if (shown === i) root.dataset.shown = String(i);
    }

    canvas.addEventListener("mousemove", (e) => { if (pinned < 0) show(nearest(e)); });
    canvas.addEventListener("mouseleave", () => { if (pinned >= 0) show(pinned); });
    canvas.addEventListener("click", (e) => {
      const i = nearest(e);
      if (i >= 0) { pinned = i; shown = -1; show(i); }
    });
    draw(-1);
  }

  for (const ex of data.explorers) {
    const root = document.querySelector(`.explorer[data-explorer="${ex.name}"]`);
    if (root) setup(root, ex);
  }
})();
