"""The explorer page's own CSS and script (`malt.explore`), kept apart from the Python.

Plain CSS and JavaScript with no library, so the page works offline from a file. The script
reads the index (`malt-index`) when the page loads and parses a tree (`tree-N`) or an eval
question (`eval-N`) only when it is opened. Every piece of model or question text goes in
through `textContent` (`el`), never as markup.
"""

CSS = """\
:root { --ok: #1a7f37; --bad: #c62828; --mid: #9a6700; --line: #d0d7de; --soft: #f6f8fa;
  --accent: #0969da; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 14px; }
body { margin: 0; color: #1f2328; background: #fff; }
header { padding: .6rem 1rem; border-bottom: 1px solid var(--line); background: var(--soft); }
h1 { font-size: 1.2rem; margin: 0 0 .3rem; }
#diagnostics { padding: .3rem 1rem; border-bottom: 1px solid var(--line); }
#diagnostics summary { cursor: pointer; color: #57606a; }
#diagnostics table { border-collapse: collapse; margin: .4rem 0; }
#diagnostics th, #diagnostics td { border: 1px solid var(--line); padding: .15rem .5rem; text-align: right; }
#diagnostics td:first-child { text-align: left; }
h2 { font-size: 1.1rem; margin: .2rem 0 .5rem; }
h3 { font-size: 1rem; margin: 0; }
.meta span { display: inline-block; margin-right: 1.2rem; color: #57606a; }
nav { display: flex; gap: .3rem; padding: .4rem 1rem 0; border-bottom: 1px solid var(--line); }
nav button { border: 1px solid var(--line); border-bottom: none; background: var(--soft);
  padding: .35rem .9rem; border-radius: 6px 6px 0 0; cursor: pointer; font: inherit; }
nav button.active { background: #fff; font-weight: 600; margin-bottom: -1px; }
.pane { display: grid; grid-template-columns: minmax(18rem, 26rem) 1fr; height: calc(100vh - 7.5rem); }
.pane[hidden] { display: none; }
aside { border-right: 1px solid var(--line); display: flex; flex-direction: column; min-height: 0; }
.filters { padding: .5rem; display: grid; gap: .35rem; border-bottom: 1px solid var(--line); }
.filters label { display: flex; gap: .4rem; align-items: center; }
.filters input[type=number] { width: 4.5rem; }
.filters input[type=search], .filters select { flex: 1; }
.count { margin: .3rem .5rem; color: #57606a; }
.qlist { list-style: none; margin: 0; padding: 0; overflow-y: auto; flex: 1; }
.q-item { display: block; width: 100%; text-align: left; border: none; border-bottom: 1px solid var(--line);
  background: none; padding: .35rem .5rem; cursor: pointer; font: inherit; }
.q-item:hover { background: var(--soft); }
.q-item.active { background: #ddf4ff; }
.qid { font-weight: 600; margin-right: .4rem; }
.qtext { display: block; color: #57606a; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.more { margin: .4rem; }
.view { overflow-y: auto; padding: .6rem 1rem 3rem; min-width: 0; }
.muted { color: #6e7781; }
.badge, .chip { display: inline-block; border-radius: 10px; padding: 0 .45rem; font-size: .8rem;
  border: 1px solid var(--line); margin-left: .25rem; background: #fff; }
.badge.correct, .chip.sft { border-color: var(--ok); color: var(--ok); }
.badge.wrong, .chip.rejected { border-color: var(--bad); color: var(--bad); }
.badge.mixed { border-color: var(--mid); color: var(--mid); }
.chip.chosen { border-color: var(--accent); color: var(--accent); }
.ok { color: var(--ok); font-weight: 600; }
.bad { color: var(--bad); font-weight: 600; }
.question { white-space: pre-wrap; background: var(--soft); padding: .5rem; border-radius: 6px; margin: 0; }
.facts span { display: inline-block; margin: .4rem 1.2rem .4rem 0; }
.controls { margin: .5rem 0; display: flex; gap: .3rem; flex-wrap: wrap; }
.controls button, .more, .jump { font: inherit; cursor: pointer; }
.jump { border: none; background: none; color: var(--accent); text-decoration: underline; padding: 0; }
details.node { border-left: 3px solid var(--line); margin: .25rem 0 .25rem .2rem; padding-left: .5rem; }
details.node[open] > summary { background: var(--soft); }
details.node.pos { border-left-color: var(--ok); }
details.node.neg { border-left-color: var(--bad); }
details.node.flash > summary { outline: 2px solid var(--accent); }
summary { cursor: pointer; padding: .15rem .2rem; border-radius: 4px; }
summary > span { margin-right: .5rem; }
.role { font-weight: 700; padding: 0 .35rem; border-radius: 4px; background: #eaeef2; }
.nid { font-family: ui-monospace, monospace; }
.preview { color: #6e7781; display: inline-block; max-width: 48ch; overflow: hidden; white-space: nowrap;
  text-overflow: ellipsis; vertical-align: bottom; }
.body { margin: .2rem 0 .4rem .4rem; }
.fields span { display: inline-block; margin-right: 1rem; }
.fields b { font-weight: 600; color: #57606a; }
pre.text { white-space: pre-wrap; word-break: break-word; background: #fff; border: 1px solid var(--line);
  border-radius: 6px; padding: .45rem; margin: .35rem 0; max-height: 24rem; overflow-y: auto;
  font-family: ui-monospace, monospace; font-size: .85rem; }
ul.fed { margin: .2rem 0; padding-left: 1.2rem; }
.children { margin-left: .8rem; }
.seeds { display: flex; gap: .3rem; align-items: center; margin: .4rem 0; }
.seeds button { font: inherit; cursor: pointer; min-width: 2rem; }
.seeds button.active { font-weight: 700; background: #ddf4ff; border: 1px solid var(--accent);
  border-radius: 4px; }
.method { border: 1px solid var(--line); border-radius: 6px; margin: .6rem 0; padding: .5rem; }
.mhead { display: flex; gap: .8rem; align-items: baseline; flex-wrap: wrap; margin-bottom: .4rem; }
.chains { display: grid; gap: .5rem; overflow-x: auto; }
.chain { border: 1px solid var(--line); border-radius: 6px; padding: .4rem; min-width: 0; }
.chain h4 { margin: 0 0 .3rem; font-size: .9rem; }
.step { border-top: 1px dashed var(--line); padding-top: .25rem; margin-top: .25rem; }
.step pre.text { max-height: 14rem; }
"""

JS = r"""
"use strict";
(function () {
  const INDEX = JSON.parse(document.getElementById("malt-index").textContent);
  const META = INDEX.meta, CHAIN = INDEX.chain, PAGE = 300;
  const ROLE = Object.fromEntries(CHAIN.map((r, i) => [r.name, Object.assign({level: i}, r)]));
  const parsed = new Map();

  // Every text goes in as a Text node or textContent: model output is never markup.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = String(v);
      else if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
    return e;
  }
  function data(id) {
    if (!parsed.has(id)) parsed.set(id, JSON.parse(document.getElementById(id).textContent));
    return parsed.get(id);
  }
  const fmt = (x) => (x === null || x === undefined ? "—" : Number(x).toFixed(3));
  const shortId = (id, root) => (id.startsWith(root + "/") ? id.slice(root.length + 1) : id);
  const mark = (ok) => (ok === null || ok === undefined ? el("span", {class: "muted", text: "—"})
    : el("span", {class: ok ? "ok" : "bad", text: ok ? "✓ right" : "✗ wrong"}));
  const outcome = (r) => (r.correct === r.leaves ? "correct" : r.correct === 0 ? "wrong" : "mixed");
  const num = (input, dflt) => (input.value === "" ? dflt : Number(input.value));
  function select(id, options) {
    return el("select", {id}, ...options.map(([v, t]) => el("option", {value: v, text: t})));
  }
  function field(name, value) { return el("span", {}, el("b", {text: name + " "}), String(value)); }

  function header() {
    const letters = CHAIN.map((r) => r.letter.toUpperCase()).join(" → ");
    const items = [`run ${META.run_dir}`, `task ${META.task}`, `chain ${letters}`,
      `credit: ${META.pooling} pooling, positive when value > ${META.threshold}`,
      `DPO pairs per parent: ${META.max_pairs_per_parent ?? "all"}`, `settings: ${META.settings}`];
    document.getElementById("top").append(el("h1", {text: "malt explore"}),
      el("div", {class: "meta"}, ...items.map((t) => el("span", {text: t}))));
  }

  // A searchable, filterable list that renders PAGE rows at a time.
  function listPane(prefix, rows, filterEls, matches, rowItem, open) {
    const list = el("ul", {class: "qlist", id: prefix + "-list"});
    const count = el("p", {class: "count", id: prefix + "-count"});
    const view = el("section", {class: "view", id: prefix + "-view"},
      el("p", {class: "muted", text: "Pick a question on the left."}));
    const search = el("input", {type: "search", id: prefix + "-search", placeholder: "search id or text"});
    let hits = null, shown = PAGE, active = null, hay = null;
    function draw() {
      list.replaceChildren(...hits.slice(0, shown).map((n) => el("li", {}, el("button", {
        class: "q-item" + (n === active ? " active" : ""), "data-n": n, onclick: (ev) => {
          list.querySelectorAll(".active").forEach((b) => b.classList.remove("active"));
          ev.currentTarget.classList.add("active");
          active = n;
          open(n, view);
        }}, ...rowItem(rows[n])))));
      if (hits.length > shown) {
        list.append(el("li", {}, el("button", {class: "more", text: `show ${Math.min(PAGE,
          hits.length - shown)} more`, onclick: () => { shown += PAGE; draw(); }})));
      }
      count.textContent = `${hits.length} of ${rows.length} questions`;
    }
    function refresh() {
      const text = search.value.trim().toLowerCase();
      if (text && hay === null) hay = rows.map((r) => (r.id + "\n" + r.q).toLowerCase());
      const next = [];
      rows.forEach((r, n) => { if ((!text || hay[n].includes(text)) && matches(r)) next.push(n); });
      // A blur fires "change" with nothing changed: redrawing then would swallow the click.
      if (hits && next.length === hits.length && next.every((n, i) => n === hits[i])) return;
      hits = next;
      shown = PAGE;
      draw();
    }
    const filters = el("div", {class: "filters"}, ...filterEls, el("label", {}, "search", search));
    filters.addEventListener("input", refresh);
    filters.addEventListener("change", refresh);
    refresh();
    return el("div", {class: "pane", id: prefix + "-pane"}, el("aside", {}, filters, count, list), view);
  }

  function treesPane() {
    const first = CHAIN[0].name;
    const kind = select("f-outcome", [["all", "all trees"], ["correct", "all leaves right"],
      ["wrong", "all leaves wrong"], ["mixed", "mixed leaves"]]);
    const pairs = el("input", {type: "checkbox", id: "f-pairs"});
    const stat = select("f-stat", [["mean", "mean leaf reward"], ["vmax", `best ${first} value`],
      ["vmin", `worst ${first} value`]]);
    const lo = el("input", {type: "number", id: "f-min", min: 0, max: 1, step: 0.05, placeholder: "0"});
    const hi = el("input", {type: "number", id: "f-max", min: 0, max: 1, step: 0.05, placeholder: "1"});
    function matches(r) {
      if (kind.value !== "all" && outcome(r) !== kind.value) return false;
      if (pairs.checked && !r.pairs) return false;
      const v = stat.value === "mean" ? (r.leaves ? r.correct / r.leaves : null) : r[stat.value];
      const a = num(lo, -Infinity), b = num(hi, Infinity);
      if (a === -Infinity && b === Infinity) return true;
      return v !== null && v >= a - 1e-9 && v <= b + 1e-9;
    }
    const rowItem = (r) => [el("span", {class: "qid", text: r.id}),
      el("span", {class: "badge " + outcome(r), text: `${r.correct}/${r.leaves} right`}),
      r.pairs ? el("span", {class: "badge", text: `${r.pairs} DPO pairs`}) : null,
      el("span", {class: "qtext", text: r.q})];
    return listPane("tree", INDEX.trees, [el("label", {}, "leaves", kind),
      el("label", {}, pairs, "has DPO pairs"),
      el("label", {}, stat, lo, "to", hi)], matches, rowItem, openTree);
  }

  function openTree(n, view) {
    const t = data("tree-" + n), row = INDEX.trees[n];
    const kids = new Map(), byId = new Map();
    for (const nd of t.nodes) {
      const key = nd.parent ?? "";
      if (!kids.has(key)) kids.set(key, []);
      kids.get(key).push(nd);
    }
    function jump(id) {
      let d = byId.get(id);
      if (!d) return;
      for (let p = d; p; p = p.parentElement.closest("details.node")) p.open = true;
      d.scrollIntoView({block: "center"});
      d.classList.add("flash");
      setTimeout(() => d.classList.remove("flash"), 1200);
    }
    function make(nd) {
      const role = ROLE[nd.role] || {letter: "?", level: 0, model: nd.role, answers: true};
      const dpo = `dpo_${role.model}`;
      const link = (id) => el("button", {class: "jump", title: id, text: shortId(id, t.id),
        onclick: () => jump(id)});
      const fed = [nd.sft ? el("li", {text: `SFT: ${nd.sft}`}) : el("li", {class: "muted",
        text: "SFT: none (not positive)"}),
      ...nd.chosen_vs.map((id) => el("li", {}, "DPO chosen vs ", link(id), ` (${dpo})`)),
      ...nd.rejected_vs.map((id) => el("li", {}, "DPO rejected vs ", link(id), ` (${dpo})`))];
      const summary = el("summary", {},
        el("span", {class: "role", title: nd.role, text: role.letter.toUpperCase()}),
        el("span", {class: "nid", text: shortId(nd.id, t.id)}),
        role.answers ? el("span", {class: "ans", text: `answer ${nd.answer ?? "none"}`}) : null,
        nd.reward === null ? null : mark(Boolean(nd.reward)),
        el("span", {class: "val", text: `value ${fmt(nd.value)}`}),
        el("span", {class: nd.label ? "ok" : "bad", text: nd.label ? "positive" : "negative"}),
        nd.sft ? el("span", {class: "chip sft", text: "SFT"}) : null,
        nd.chosen_vs.length ? el("span", {class: "chip chosen",
          text: `chosen ×${nd.chosen_vs.length}`}) : null,
        nd.rejected_vs.length ? el("span", {class: "chip rejected",
          text: `rejected ×${nd.rejected_vs.length}`}) : null,
        el("span", {class: "preview", text: nd.text.slice(0, 80).replace(/\s+/g, " ")}));
      const body = el("div", {class: "body"},
        el("div", {class: "fields"}, field("role", `${nd.role} (model ${role.model})`),
          field("answer", nd.answer ?? "none"), field("reward", nd.reward ?? "—"),
          field("value", fmt(nd.value)), field("label", nd.label ? "positive" : "negative"),
          field("tokens", nd.tokens ?? "—"), field("finish", nd.finish ?? "—")),
        el("pre", {class: "text", text: nd.text}), el("ul", {class: "fed"}, ...fed));
      const d = el("details", {class: "node " + (nd.label ? "pos" : "neg"), "data-node": nd.id,
        "data-level": role.level}, summary, body,
        el("div", {class: "children"}, ...(kids.get(nd.id) || []).map(make)));
      byId.set(nd.id, d);
      return d;
    }
    const roots = (kids.get("") || []).map(make);
    const openTo = (level) => byId.forEach((d) => { d.open = Number(d.dataset.level) < level; });
    const controls = el("div", {class: "controls"}, "show: ",
      ...CHAIN.map((r, i) => el("button", {text: `${r.letter.toUpperCase()} (${r.name})`,
        onclick: () => openTo(i)})),
      el("button", {text: "everything", onclick: () => openTo(CHAIN.length)}));
    view.replaceChildren(el("h2", {text: t.id}), el("p", {class: "question", text: t.question}),
      el("div", {class: "facts"}, field("gold", t.gold),
        field("leaves right", `${row.correct}/${row.leaves}`), field("DPO pairs", t.pairs),
        field("credit", `${META.pooling} pooling, positive when value > ${META.threshold}`)),
      controls, ...roots);
    view.scrollTop = 0;
  }

  function evalPane() {
    const kind = select("e-outcome", [["all", "all questions"], ["right", "every vote right"],
      ["wrong", "every vote wrong"], ["split", "votes disagree"]]);
    function matches(r) {
      if (kind.value === "right") return r.right === r.runs;
      if (kind.value === "wrong") return r.right === 0;
      if (kind.value === "split") return r.right > 0 && r.right < r.runs;
      return true;
    }
    const rowItem = (r) => [el("span", {class: "qid", text: r.id}),
      el("span", {class: "badge " + (r.right === r.runs ? "correct" : r.right ? "mixed" : "wrong"),
        text: `${r.right}/${r.runs} votes right`}), el("span", {class: "qtext", text: r.q})];
    return listPane("eval", INDEX.eval, [el("label", {}, "outcome", kind)], matches, rowItem, openEval);
  }

  function openEval(n, view) {
    const q = data("eval-" + n);
    const seeds = Object.keys(q.seeds);
    const body = el("div", {});
    const bar = el("div", {class: "seeds"}, "seed: ", ...seeds.map((s) => el("button", {
      "data-seed": s, text: s, onclick: () => showSeed(s)})));
    function showSeed(s) {
      bar.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.dataset.seed === s));
      body.replaceChildren(...q.seeds[s].map(methodBlock));
    }
    view.replaceChildren(el("h2", {text: q.id}), el("p", {class: "question", text: q.question}),
      el("div", {class: "facts"}, field("gold", q.gold ?? "—")), bar, body);
    if (seeds.length) showSeed(seeds[0]);
    view.scrollTop = 0;
  }

  function methodBlock(m) {
    const grid = el("div", {class: "chains"}, ...m.chains.map((c, i) => el("div", {class: "chain"},
      el("h4", {}, `chain ${i}`, m.supporters.includes(i) ? el("span", {class: "chip chosen",
        text: "backs the vote"}) : null, c.change ? el("span", {class: "chip " + (c.change === "fixed"
        ? "sft" : "rejected"), text: c.change}) : null),
      ...c.steps.map((st) => el("div", {class: "step"},
        el("div", {}, el("span", {class: "role", text: (ROLE[st.role]?.letter ?? st.role).toUpperCase()}),
          ` ${st.role}: answer ${st.answer ?? "none"} `, st.correct === null ? null : mark(st.correct)),
        el("pre", {class: "text", text: st.text ?? ""}))),
      el("div", {}, field("final", c.answer ?? "none"), " ", mark(c.correct)))));
    grid.style.gridTemplateColumns = `repeat(${Math.max(1, m.chains.length)}, minmax(15rem, 1fr))`;
    const votes = m.votes ? ` (${m.votes} of ${m.chains.length})` : "";
    const cost = m.cost ? el("span", {class: "muted", text: `${m.cost.calls} calls, ${
      m.cost.prompt_tokens + m.cost.completion_tokens} tokens`}) : null;
    return el("section", {class: "method", "data-method": m.method},
      el("div", {class: "mhead"}, el("h3", {text: m.label}), el("span", {class: "muted", text: m.method}),
        el("span", {text: `vote ${m.vote ?? "none"}${votes}`}), mark(m.correct), cost), grid);
  }

  header();
  const panes = [["trees", `Training trees (${INDEX.trees.length})`, treesPane()]];
  if (INDEX.eval.length) panes.push(["eval", `Eval questions (${INDEX.eval.length})`, evalPane()]);
  const nav = document.getElementById("tabs"), app = document.getElementById("app");
  function show(name) {
    for (const [key, , pane] of panes) pane.hidden = key !== name;
    nav.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  }
  for (const [key, title, pane] of panes) {
    nav.append(el("button", {"data-tab": key, id: "tab-" + key, text: title, onclick: () => show(key)}));
    app.append(pane);
  }
  show("trees");
})();
"""
