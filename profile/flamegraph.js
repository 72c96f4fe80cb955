// Flame graph interaction, embedded by wasmtrace (profile/flamegraph.go).
// config is declared just above: pad, width (of the frame area), charWidth,
// minWidth, matchFill, total.
"use strict";

var frames = [];   // every frame: {g, rect, text, title, name, s, n, d, x, w, fill, label}
var byPos = {};    // "s,d" -> frame
var zoomed = null; // the frame zoomed into, or null
var term = null;   // the search term, or null
var details, matched, unzoomButton, searchButton;

function init(evt) {
	details = document.getElementById("details");
	matched = document.getElementById("matched");
	unzoomButton = document.getElementById("unzoom");
	searchButton = document.getElementById("search");
	var gs = document.querySelectorAll("#frames > g");
	for (var i = 0; i < gs.length; i++) {
		var g = gs[i];
		var rect = g.querySelector("rect"), text = g.querySelector("text"), title = g.querySelector("title");
		var f = {
			g: g, rect: rect, text: text, title: title,
			name: title.textContent.split("\n")[0],
			s: +g.getAttribute("data-s"), n: +g.getAttribute("data-n"), d: +g.getAttribute("data-d"),
			x: +rect.getAttribute("x"), w: +rect.getAttribute("width"),
			fill: rect.getAttribute("fill"), label: text.textContent
		};
		frames.push(f);
		byPos[f.s + "," + f.d] = f;
		g.frame = f;
	}
	var area = document.getElementById("frames");
	area.addEventListener("click", function (e) {
		var g = frameOf(e.target);
		if (g) { zoom(g.frame); }
	});
	area.addEventListener("mouseover", function (e) {
		var g = frameOf(e.target);
		if (g) { details.textContent = describe(g.frame); }
	});
	area.addEventListener("mouseout", function () { details.textContent = " "; });
	unzoomButton.addEventListener("click", unzoom);
	searchButton.addEventListener("click", function () {
		if (term !== null) { resetSearch(); } else { askSearch(); }
	});
	window.addEventListener("keydown", function (e) {
		if ((e.key === "f" && (e.ctrlKey || e.metaKey)) || (e.key === "/" && !e.ctrlKey && !e.metaKey)) {
			e.preventDefault();
			askSearch();
		} else if (e.key === "Escape") {
			unzoom();
		}
	});
	// State from the URL: ?z=START,DEPTH zooms, ?s=REGEXP searches.
	var params = new URLSearchParams(document.location.search);
	if (params.get("z") && byPos[params.get("z")]) { zoom(byPos[params.get("z")]); }
	if (params.get("s")) { search(params.get("s")); }
}

function frameOf(el) {
	while (el && el.parentNode) {
		if (el.classList && el.classList.contains("f")) { return el; }
		el = el.parentNode;
	}
	return null;
}

function pct(n, of) { return (of > 0 ? 100 * n / of : 0).toFixed(2) + "%"; }

function plural(n) { return n === 1 ? "1 sample" : n + " samples"; }

function describe(f) {
	var lines = f.title.textContent.split("\n");
	var s = lines[0] + ": " + plural(f.n) + ", " + pct(f.n, config.total);
	if (zoomed && zoomed !== f && f.d > zoomed.d) { s += " (" + pct(f.n, zoomed.n) + " of " + zoomed.name + ")"; }
	return s + " · " + lines.slice(1, lines.length - 1).join(" · ");
}

// label shortens a name to fit w, as fitLabel does in Go.
function label(name, w) {
	var fits = Math.floor((w - 6) / config.charWidth);
	if (fits < 3) { return ""; }
	var chars = Array.from(name);
	if (chars.length <= fits) { return name; }
	return chars.slice(0, fits - 2).join("") + "..";
}

function place(f, x, w) {
	f.rect.setAttribute("x", x.toFixed(2));
	f.rect.setAttribute("width", w.toFixed(2));
	f.text.setAttribute("x", (x + 3).toFixed(2));
	f.text.textContent = label(f.name, w);
}

function zoom(z) {
	zoomed = z;
	unzoomButton.classList.remove("hide");
	var scale = config.width / z.n;
	for (var i = 0; i < frames.length; i++) {
		var f = frames[i];
		var inside = f.d >= z.d && f.s >= z.s && f.s + f.n <= z.s + z.n;
		var above = f.d < z.d && f.s <= z.s && f.s + f.n >= z.s + z.n;
		if (inside && f.n * scale >= config.minWidth) {
			place(f, config.pad + (f.s - z.s) * scale, f.n * scale);
			f.g.classList.remove("hide", "parent");
		} else if (above) {
			place(f, config.pad, config.width);
			f.g.classList.remove("hide");
			f.g.classList.add("parent");
		} else {
			f.g.classList.add("hide");
		}
	}
	saveState();
}

function unzoom() {
	zoomed = null;
	unzoomButton.classList.add("hide");
	for (var i = 0; i < frames.length; i++) {
		var f = frames[i];
		f.rect.setAttribute("x", f.x.toFixed(2));
		f.rect.setAttribute("width", f.w.toFixed(2));
		f.text.setAttribute("x", (f.x + 3).toFixed(2));
		f.text.textContent = f.label;
		f.g.classList.remove("hide", "parent");
	}
	saveState();
}

function askSearch() {
	var t = prompt("Search frames (regular expression):", term || "");
	if (t) { search(t); }
}

function search(t) {
	var re;
	try {
		re = new RegExp(t);
	} catch (e) {
		alert("Not a regular expression: " + e.message);
		return;
	}
	term = t;
	// Matching frames, by position: a frame's samples lie within its
	// parent's, so a match inside an earlier match adds nothing.
	var hits = [];
	for (var i = 0; i < frames.length; i++) {
		var f = frames[i];
		if (re.test(f.name)) {
			f.rect.setAttribute("fill", config.matchFill);
			hits.push(f);
		} else {
			f.rect.setAttribute("fill", f.fill);
		}
	}
	hits.sort(function (a, b) { return a.s - b.s || b.n - a.n; });
	var sum = 0, end = -1;
	for (var j = 0; j < hits.length; j++) {
		if (hits[j].s >= end) {
			sum += hits[j].n;
			end = hits[j].s + hits[j].n;
		}
	}
	matched.textContent = "Matched: " + pct(sum, config.total) + " (" + plural(sum) + ")";
	searchButton.textContent = "Reset Search";
	saveState();
}

function resetSearch() {
	term = null;
	for (var i = 0; i < frames.length; i++) { frames[i].rect.setAttribute("fill", frames[i].fill); }
	matched.textContent = " ";
	searchButton.textContent = "Search";
	saveState();
}

function saveState() {
	var params = new URLSearchParams();
	if (zoomed) { params.set("z", zoomed.s + "," + zoomed.d); }
	if (term !== null) { params.set("s", term); }
	var q = params.toString();
	try {
		history.replaceState(null, "", q ? "?" + q : document.location.pathname);
	} catch (e) {
		// Some viewers (file: URLs in some browsers) refuse; the state is
		// then just not kept.
	}
}
