/* The "Try it" page: the book's trained model, in the reader's browser.
 *
 * Text -> images: the caption typed is tokenized (tokenizer.mjs), embedded by the exported text encoder
 * under onnxruntime-web, and ranked against the test images' embeddings (images.f16.gz) by dot product,
 * as dualpath.search.Index.search_images ranks. Image -> text: a click on an image lists the test
 * captions ranked first for it, computed when the book was built (index.json.gz).
 *
 * Every file comes from this module's folder (_static/tryit/): onnxruntime-web vendored from npm, the
 * model, the embeddings and the thumbnails. Nothing is fetched from another host. Files ending in .gz
 * are gzip streams, inflated here with the browser's DecompressionStream. The scripts are ES modules
 * (.mjs): Jupyter Book puts every .js and .css file under _static into every page of the book.
 *
 * State for tests and benchmarks: the container's data-state is loading | ready | error; the results
 * list's data-query names the query its results belong to, data-ms how long that query took from
 * the keystroke to the results drawn. */
import * as ort from "./ort/ort.wasm.min.mjs";
import { makeTokenizer } from "./tokenizer.mjs";

const BASE = new URL(".", import.meta.url).href;
const SHOWN = 10;              // images listed per query
const ORT_DIR = "ort/";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  if (!url.endsWith(".gz")) return new Uint8Array(await response.arrayBuffer());
  const inflated = response.body.pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(inflated).arrayBuffer());
}

async function fetchJson(url) {
  return JSON.parse(new TextDecoder().decode(await fetchBytes(url)));
}

// IEEE half -> float: the embeddings travel as float16 to halve their size.
function halfToFloat(bits) {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i], sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
    out[i] = exp === 0 ? sign * frac * 2 ** -24
      : exp === 31 ? (frac ? NaN : sign * Infinity)
        : sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}

function percent(value) {
  return `${Number(value).toFixed(1)}`;
}

class TryIt {
  constructor(root) {
    this.root = root;
    this.base = BASE;
    this.pending = null;
    this.running = false;
    this.build();
  }

  build() {
    this.status = el("p", { class: "tryit-status", text: "Loading the model…" });
    this.input = el("input", {
      type: "text", class: "tryit-query", placeholder: "a dog runs on the beach",
      "aria-label": "a sentence to search the test images with", disabled: "",
      autocomplete: "off", spellcheck: "false",
    });
    this.tokens = el("p", { class: "tryit-tokens", "aria-live": "polite" });
    this.message = el("p", { class: "tryit-message", "aria-live": "polite" });
    this.results = el("ol", { class: "tryit-results" });
    this.panel = el("div", { class: "tryit-panel", hidden: "" });
    this.root.replaceChildren(this.status, this.input, this.tokens, this.message, this.results, this.panel);
    this.root.dataset.state = "loading";
  }

  async load() {
    ort.env.wasm.numThreads = 1;            // threads need cross-origin isolation, which a static host lacks
    ort.env.wasm.wasmPaths = { mjs: this.base + ORT_DIR + "ort-wasm-simd-threaded.mjs" };
    const [meta, rules, index, wasm, model, images] = await Promise.all([
      fetchJson(this.base + "model.json"), fetchJson(this.base + "tokenizer.json.gz"),
      fetchJson(this.base + "index.json.gz"), fetchBytes(this.base + ORT_DIR + "ort-wasm-simd-threaded.wasm.gz"),
      fetchBytes(this.base + "text_encoder.onnx.gz"), fetchBytes(this.base + "images.f16.gz"),
    ]);
    ort.env.wasm.wasmBinary = wasm;
    this.session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
    this.tokenizer = makeTokenizer(rules);
    this.meta = meta;
    this.index = index;
    this.dim = meta.embedding_dim;
    this.images = halfToFloat(new Uint16Array(images.buffer, images.byteOffset, images.byteLength / 2));
    if (this.images.length !== index.images.length * this.dim) {
      throw new Error(`images.f16 holds ${this.images.length} numbers, expected ${index.images.length} x ${this.dim}`);
    }
    this.describeModel();
    this.input.removeAttribute("disabled");
    this.input.addEventListener("input", (event) => this.queue(this.input.value, event.timeStamp));
    this.root.dataset.state = "ready";
    this.showMessage("");
    if (this.input.value) this.queue(this.input.value, performance.now());
  }

  describeModel() {
    const m = this.meta.test_metrics || {};
    const n = this.index.images.length;
    this.status.replaceChildren(
      `The model: run ${this.meta.run} (${this.meta.phase}), commit ${String(this.meta.commit).slice(0, 10)}; `
      + `its test recall over these ${n.toLocaleString("en")} images: text→image R@1 ${percent(m.t2i_r1)}, R@10 ${percent(m.t2i_r10)}; `
      + `image→text R@1 ${percent(m.i2t_r1)}, R@10 ${percent(m.i2t_r10)}; R-sum ${percent(m.rsum)}. `
      + `Vocabulary: ${this.tokenizer.vocabularySize.toLocaleString("en")} words from the training captions.`);
  }

  showMessage(text) {
    this.message.textContent = text;
  }

  queue(query, typedAt) {
    this.pending = { query, typedAt };
    if (!this.running) this.drain();
  }

  // One query at a time; while one runs, only the newest typed text waits for its turn.
  async drain() {
    this.running = true;
    try {
      while (this.pending) {
        const { query, typedAt } = this.pending;
        this.pending = null;
        await this.search(query, typedAt);
      }
    } catch (error) {
      this.fail(error);
    } finally {
      this.running = false;
    }
  }

  showTokens(tokens) {
    this.tokens.replaceChildren(...tokens.map((t) => el("span", {
      class: t.id === 0 ? "tryit-word tryit-unknown" : t.read ? "tryit-word" : "tryit-word tryit-unread",
      title: t.id === 0 ? "not in the vocabulary: the model never sees this word"
        : t.read ? `word id ${t.id}` : `beyond the first ${this.tokenizer.maxWords} known words: not read`,
      text: t.word,
    })));
  }

  async search(query, typedAt) {
    const { tokens, ids, row } = this.tokenizer.encode(query);
    this.showTokens(tokens);
    this.panel.hidden = true;
    if (ids.length === 0) {
      this.results.replaceChildren();
      this.showMessage(tokens.length === 0 ? "Type a sentence to rank the test images."
        : "None of these words is in the model's vocabulary, so there is nothing to rank: "
          + "try other words.");
      this.finish(query, typedAt);
      return;
    }
    const unknown = tokens.filter((t) => t.id === 0).length;
    const ids64 = BigInt64Array.from(row, (id) => BigInt(id));
    const output = await this.session.run({ ids: new ort.Tensor("int64", ids64, [1, row.length]) });
    const q = output.embedding.data;
    const scores = this.score(q);
    const order = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b).slice(0, SHOWN);
    this.showMessage(unknown ? `${unknown} word(s) not in the vocabulary (struck through) are left out.` : "");
    this.results.replaceChildren(...order.map((i, r) => this.hit(i, r + 1, scores[i])));
    this.finish(query, typedAt);
  }

  finish(query, typedAt) {
    this.results.dataset.query = query;
    this.results.dataset.ms = String(Math.round(performance.now() - typedAt));
  }

  score(q) {
    const d = this.dim, n = this.index.images.length, out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0, o = i * d; j < d; j++) s += this.images[o + j] * q[j];
      out[i] = s;
    }
    return out;
  }

  hit(i, rank, score) {
    const image = this.index.images[i];
    const captions = image.captions.map((c) => el("li", { text: this.index.captions[c] }));
    const thumb = el("img", { src: this.base + image.thumb, alt: `test image ${image.name}`, loading: "lazy" });
    const button = el("button", { type: "button", class: "tryit-image", title: "its top captions" }, thumb);
    button.addEventListener("click", () => this.showCaptions(i));
    return el("li", { class: "tryit-hit", "data-image": image.name, "data-rank": String(rank) },
      el("span", { class: "tryit-rank", text: `${rank}` }), button,
      el("div", { class: "tryit-own" },
        el("span", { class: "tryit-score", text: `similarity ${score.toFixed(3)}` }),
        el("ul", {}, ...captions)));
  }

  showCaptions(i) {
    const image = this.index.images[i];
    const own = new Set(image.captions);
    const items = this.index.top_captions[i].map((c, r) => el("li", {
      class: own.has(c) ? "tryit-caption tryit-own-caption" : "tryit-caption",
      "data-rank": String(r + 1),
      text: this.index.captions[c] + (own.has(c) ? "  (one of its own captions)" : ""),
    }));
    this.panel.replaceChildren(
      el("p", { text: `The test captions ranked first for ${image.name} (image → text), out of `
        + `${this.index.captions.length.toLocaleString("en")}:` }),
      el("img", { src: this.base + image.thumb, alt: `test image ${image.name}` }),
      el("ol", {}, ...items));
    this.panel.dataset.image = image.name;
    this.panel.hidden = false;
    this.panel.scrollIntoView({ block: "nearest" });
  }

  fail(error) {
    this.root.dataset.state = "error";
    this.root.dataset.error = String(error && error.message || error);
    this.status.textContent = "The model could not be loaded: " + this.root.dataset.error
      + ". The page needs the files `make book` writes to _static/tryit/.";
    this.input.setAttribute("disabled", "");
  }
}

function start() {
  for (const root of document.querySelectorAll(".dualpath-try-it")) {
    const page = new TryIt(root);
    page.load().catch((error) => page.fail(error));
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
