""""Real or Fake?": a visual Turing test of generated images for clinicians, and its scoring.

Medical GAN papers validate synthetic images by asking experts to tell them from real ones. This
package makes that a two-command job over plain folders of images:

\b
  site.py    `img2dist.py turing`: a self-contained static page (works from file://, no server, no
             network) showing a shuffled mix of real and generated images, plus `key.json`, the
             answers, kept beside the site folder and never loaded by it
  score.py   `img2dist.py turing-score`: per-rater accuracy, sensitivity, specificity and binomial
             test, pooled accuracy, Fleiss' kappa, per-image fool rates, a grid of the best fakes
  cli.py     the two click commands, added to the `img2dist.py` group
  assets/    the page itself: index.html, app.js, style.css (hand-written, no framework)

Importing this package loads nothing heavy: Pillow and scipy are imported by the functions that
need them.
"""
