// The pods' charts: an inline SVG per pod, built with the DOM (createElementNS, textContent: no
// markup is parsed, no library), of the last hour from /api/pods/ID/series. Two series on one
// time axis, each scaled to its own peak: tunnels (the most open at once each minute) as a line,
// bytes (in + out) per minute as bars. Served by pipe2me-admin serve, under script-src 'self';
// console.js calls window.p2mChart(series).
"use strict";
(function () {
    const NS = "http://www.w3.org/2000/svg";
    const W = 240, H = 64, LEFT = 4, TOP = 10, BOTTOM = 12; // the plot is W x (H - TOP - BOTTOM)

    function svg(tag, attrs, text) {
        const e = document.createElementNS(NS, tag);
        for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
        if (text !== undefined) e.textContent = text;
        return e;
    }

    function human(n) {
        const units = ["", "k", "M", "G", "T"];
        let i = 0;
        while (n >= 1000 && i < units.length - 1) {
            n /= 1000;
            i++;
        }
        return (i === 0 ? String(n) : n.toFixed(1)) + units[i];
    }

    // series: {pod, minute_now, minutes: [{minute, conns, tunnels, bytes_in, bytes_out}, ...]},
    // oldest first. Returns an <svg> element.
    function chart(series) {
        const m = series.minutes || [];
        const bytes = m.map((p) => p.bytes_in + p.bytes_out), tunnels = m.map((p) => p.tunnels);
        const conns = m.reduce((a, p) => a + p.conns, 0), total = bytes.reduce((a, b) => a + b, 0);
        const peakBytes = Math.max(1, ...bytes), peakTunnels = Math.max(1, ...tunnels);
        const plotW = W - 2 * LEFT, plotH = H - TOP - BOTTOM, step = plotW / Math.max(1, m.length);
        const y = (v, peak) => TOP + plotH - (v / peak) * plotH;
        const summary = series.pod + ", last hour: " + conns + " tunnels joined, " + human(total) + "B, at most " +
            Math.max(0, ...tunnels) + " tunnels open at once";
        const root = svg("svg", {class: "chart", width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
            "aria-label": summary});
        root.append(svg("title", {}, summary));
        root.append(svg("line", {class: "axis", x1: LEFT, y1: TOP + plotH, x2: W - LEFT, y2: TOP + plotH}));
        m.forEach((p, i) => {
            if (bytes[i] === 0) return;
            const top = y(bytes[i], peakBytes);
            root.append(svg("rect", {class: "bytes", x: LEFT + i * step, y: top, width: Math.max(1, step - 0.5),
                height: TOP + plotH - top}));
        });
        const points = m.map((p, i) => (LEFT + (i + 0.5) * step).toFixed(1) + "," + y(p.tunnels, peakTunnels).toFixed(1));
        if (points.length > 0) root.append(svg("polyline", {class: "tunnels", points: points.join(" ")}));
        root.append(svg("text", {class: "legend", x: LEFT, y: TOP - 2},
            "tunnels (peak " + Math.max(0, ...tunnels) + ")  bytes/min (peak " + human(Math.max(0, ...bytes)) + "B)"));
        root.append(svg("text", {class: "tick", x: LEFT, y: H - 2}, "-60 min"));
        root.append(svg("text", {class: "tick", x: W - LEFT, y: H - 2, "text-anchor": "end"}, "now"));
        return root;
    }

    window.p2mChart = chart;
})();
