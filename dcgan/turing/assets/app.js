/* "Real or Fake?": the rater's page, written by `img2dist.py turing`.
 *
 * Plain JavaScript, no framework and no network, so the page works from file:// on a computer
 * without internet. The images and (optionally) the masked answers come from items.js, a script
 * because fetching a JSON file is refused on file://.
 *
 * State lives in localStorage under a key holding the site id, and is saved after every answer,
 * so a reload or a closed tab loses nothing. Each rater gets their own random order (drawn at the
 * start, kept in the state), so that order effects average out over raters.
 *
 * The score at the end decodes the masked answers of items.js. It is shown only once every image
 * is answered and the answers are locked, but it is a convenience, not a secret: the official score
 * is computed by `img2dist.py turing-score` from key.json, which this page never loads.
 */
(function () {
  "use strict";

  var SITE = window.TURING_SITE || null;  // null when items.js is missing: init() says so
  var FORMAT = "isic-gan-turing-answers";
  var STORE_KEY = "isic-gan-turing:" + (SITE ? SITE.siteId : "");
  var N = SITE && Array.isArray(SITE.images) ? SITE.images.length : 0;
  var SCREENS = ["start", "rate", "review", "done"];

  var state = null;       // {siteId, rater, order, answers: [{id, answer, confidence, time_ms}], started, finished}
  var confidence = null;  // confidence chosen for the image on screen, 1..5 or null
  var shownAt = 0;        // when the image on screen was shown (performance.now)

  function $(id) { return document.getElementById(id); }

  function warn(message) {
    $("warning").textContent = message;
    $("warning").hidden = false;
  }

  // ---- storage ---------------------------------------------------------------------------------

  function isValid(s) {
    return s && s.siteId === SITE.siteId && typeof s.rater === "string" && Array.isArray(s.order) &&
      s.order.length === N && Array.isArray(s.answers) && s.answers.length <= N;
  }

  function load() {
    try {
      var s = JSON.parse(window.localStorage.getItem(STORE_KEY) || "null");
      return isValid(s) ? s : null;
    } catch (e) {
      return null;
    }
  }

  function save() {
    try {
      if (state) { window.localStorage.setItem(STORE_KEY, JSON.stringify(state)); }
      else { window.localStorage.removeItem(STORE_KEY); }
    } catch (e) {
      warn("This browser does not let the page keep your answers: do not reload or close it " +
           "before you have downloaded them.");
    }
  }

  // ---- helpers ---------------------------------------------------------------------------------

  function randomBelow(n) {
    var buf = new Uint32Array(1);
    window.crypto.getRandomValues(buf);
    return buf[0] % n;
  }

  function shuffled(list) {
    var out = list.slice();
    for (var i = out.length - 1; i > 0; i--) {
      var j = randomBelow(i + 1);
      var t = out[i]; out[i] = out[j]; out[j] = t;
    }
    return out;
  }

  function setText(selector, text) {
    document.querySelectorAll(selector).forEach(function (el) { el.textContent = text; });
  }

  function show(name) {
    SCREENS.forEach(function (s) { $(s).hidden = s !== name; });
  }

  function current() {
    for (var i = 0; i < SCREENS.length; i++) { if (!$(SCREENS[i]).hidden) { return SCREENS[i]; } }
    return null;
  }

  function fileName() {
    var slug = state.rater.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-")
      .replace(/^-+|-+$/g, "").slice(0, 40) || "rater";
    return "turing-answers-" + SITE.siteId + "-" + slug + ".json";
  }

  // ---- rendering -------------------------------------------------------------------------------

  function render() {
    $("who").textContent = state ? state.rater : "";
    if (!state) {
      show("start");
      $("rater").focus();
    } else if (state.finished) {
      renderDone();
    } else if (state.answers.length === N) {
      show("review");
      $("finish").focus();
    } else {
      renderItem();
    }
  }

  function renderItem() {
    var i = state.answers.length;
    var img = $("image");
    var src = "images/" + state.order[i] + ".png";
    show("rate");
    if (img.getAttribute("src") !== src) { img.src = src; }
    img.alt = "Image " + (i + 1) + " of " + N + ": real or fake?";
    $("progress").setAttribute("aria-valuenow", String(i));
    $("progress-fill").style.width = (100 * i / N) + "%";
    $("progress-text").textContent = (i + 1) + " / " + N;
    $("back").disabled = i === 0;
    renderConfidence();
    renderLast();
    shownAt = window.performance.now();
    if (i + 1 < N) { new Image().src = "images/" + state.order[i + 1] + ".png"; }
  }

  function renderConfidence() {
    document.querySelectorAll(".conf").forEach(function (b) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.value) === confidence));
    });
  }

  function renderLast() {
    var last = state.answers[state.answers.length - 1];
    $("last").textContent = last ? "Your last answer: " + last.answer +
      (last.confidence ? ", sure " + last.confidence + " of 5" : "") : "";
  }

  function truth() {
    // Unmask items.js's answers: 1 = fake. Only ever called once the answers are locked.
    var mask = SITE.score.mask, bits = SITE.score.bits, out = {};
    SITE.images.forEach(function (id, i) {
      var b = parseInt(bits.substr(2 * i, 2), 16) ^ parseInt(mask.substr(2 * i, 2), 16);
      out[id] = b & 1 ? "fake" : "real";
    });
    return out;
  }

  function renderScore() {
    var key = truth(), correct = 0, fakes = 0, fakesFound = 0, reals = 0, realsFound = 0;
    state.answers.forEach(function (a) {
      var right = key[a.id] === a.answer;
      correct += right ? 1 : 0;
      if (key[a.id] === "fake") { fakes++; fakesFound += right ? 1 : 0; }
      else { reals++; realsFound += right ? 1 : 0; }
    });
    $("score-correct").textContent = String(correct);
    $("score-percent").textContent = "(" + Math.round(100 * correct / N) + "\u00a0%)";
    $("score-detail").textContent = "Fakes you called fake: " + fakesFound + " of " + fakes +
      ". Reals you called real: " + realsFound + " of " + reals + ".";
  }

  function renderDone() {
    show("done");
    $("done-name").textContent = state.rater;
    $("file-name").textContent = fileName();
    $("score").hidden = !SITE.score;
    $("no-score").hidden = !!SITE.score;
    if (SITE.score) { renderScore(); }
    $("download").focus();
  }

  // ---- actions ---------------------------------------------------------------------------------

  function start(event) {
    event.preventDefault();
    var name = $("rater").value.trim();
    if (!name) {
      $("rater").setAttribute("aria-invalid", "true");
      $("rater").focus();
      return;
    }
    state = {siteId: SITE.siteId, rater: name, order: shuffled(SITE.images), answers: [],
             started: new Date().toISOString(), finished: null};
    confidence = null;
    save();
    render();
  }

  function answer(label) {
    var img = $("image");
    if (!state || state.finished || state.answers.length >= N) { return; }
    if (!img.complete || img.naturalWidth === 0) { return; }  // never answer an image not yet seen
    state.answers.push({id: state.order[state.answers.length], answer: label, confidence: confidence,
                        time_ms: Math.round(window.performance.now() - shownAt)});
    confidence = null;
    save();
    render();
  }

  function back() {
    if (!state || state.finished || state.answers.length === 0) { return; }
    confidence = state.answers.pop().confidence;
    save();
    render();
  }

  function setConfidence(value) {
    confidence = confidence === value ? null : value;
    renderConfidence();
  }

  function finish() {
    if (!state || state.answers.length !== N) { return; }
    state.finished = new Date().toISOString();
    save();
    render();
  }

  function download() {
    var payload = {format: FORMAT, version: 1, site_id: SITE.siteId, rater: state.rater,
                   started: state.started, finished: state.finished, answers: state.answers};
    var blob = new Blob([JSON.stringify(payload, null, 2) + "\n"], {type: "application/json"});
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = fileName();
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(function () { URL.revokeObjectURL(link.href); }, 10000);
  }

  function newRater() {
    if (!window.confirm("Start again for another rater? These answers will be removed from this " +
                        "browser: download them first.")) { return; }
    state = null;
    save();
    $("rater").value = "";
    render();
  }

  function onKey(event) {
    var tag = event.target && event.target.tagName;
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) { return; }
    // Typing a name is not answering; the sharp-pixels checkbox keeps R, F and the arrows working.
    if ((tag === "INPUT" && event.target.type !== "checkbox") || tag === "TEXTAREA") { return; }
    var k = event.key, screen = current();
    if (screen === "rate") {
      if (k === "r" || k === "R" || k === "ArrowLeft") { answer("real"); }
      else if (k === "f" || k === "F" || k === "ArrowRight") { answer("fake"); }
      else if (k.length === 1 && k >= "1" && k <= "5") { setConfidence(Number(k)); }
      else if (k === "Backspace" || k === "u" || k === "U") { back(); }
      else { return; }
      event.preventDefault();
    } else if (screen === "review" && (k === "Backspace" || k === "u" || k === "U")) {
      event.preventDefault();
      back();
    } else if (screen === "review" && k === "Enter" && tag !== "BUTTON") {
      event.preventDefault();
      finish();
    }
  }

  // ---- smooth or sharp enlargement: a display choice, kept apart from the answers ----------------

  var CRISP_KEY = "turing-sharp-pixels";

  function setCrisp(on) {
    $("crisp").checked = on;
    $("frame").classList.toggle("crisp", on);
  }

  function loadCrisp() {
    try { return window.localStorage.getItem(CRISP_KEY) === "1"; } catch (e) { return false; }
  }

  function saveCrisp() {
    try { window.localStorage.setItem(CRISP_KEY, $("crisp").checked ? "1" : "0"); } catch (e) { /* private mode */ }
  }

  // ---- wiring ----------------------------------------------------------------------------------

  function init() {
    if (!SITE || !Array.isArray(SITE.images)) {
      warn("items.js is missing: keep all the files of this folder together.");
      return;
    }
    setText(".count", String(N));
    $("site-id").textContent = SITE.siteId;
    $("progress").setAttribute("aria-valuemax", String(N));
    $("frame").style.setProperty("--w", String(SITE.width));
    $("frame").style.setProperty("--h", String(SITE.height));
    $("native").textContent = SITE.width + "\u00a0\u00d7\u00a0" + SITE.height + "\u00a0px images, enlarged";
    setCrisp(loadCrisp());
    $("crisp").addEventListener("change", function () {
      setCrisp($("crisp").checked);
      saveCrisp();
    });
    $("start-form").addEventListener("submit", start);
    $("real").addEventListener("click", function () { answer("real"); });
    $("fake").addEventListener("click", function () { answer("fake"); });
    $("back").addEventListener("click", back);
    $("review-back").addEventListener("click", back);
    $("finish").addEventListener("click", finish);
    $("download").addEventListener("click", download);
    $("new-rater").addEventListener("click", newRater);
    document.querySelectorAll(".conf").forEach(function (b) {
      b.addEventListener("click", function () { setConfidence(Number(b.dataset.value)); });
    });
    document.addEventListener("keydown", onKey);
    $("image").addEventListener("error", function () {
      warn("An image could not be shown: keep all the files of this folder together.");
    });
    state = load();
    render();
  }

  init();
})();
