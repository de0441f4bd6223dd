"""Compare folders of images: distances, 2-D embeddings, group statistics and GAN quality measures.

`img2dist.py` is a thin CLI over these modules:

\b
  cache.py     on-disk feature cache keyed by file content and parameters
  color.py     batched k-means color quantization and the 2018 centroid distance
  features.py  registry of feature kinds (color, pixels): paths -> vectors + distance matrix
  embed.py     registry of 2-D embeddings (MDS, t-SNE, PCA) and group statistics
  plot.py      the scatter plot (matplotlib, object-oriented, no pyplot state)
  report.py    the `embedding` command end to end: features, embedding, plot, CSV/NPY/JSON, table
  quality.py   paired piqa measures, sliced Wasserstein distance, k-NN precision/recall
  inception.py optional FID/KID from a local Inception-v3 state_dict
  spectrum.py  azimuthally averaged power spectra: top-band ratio of fakes vs reals, plot
  judges.py    the two-sample test's judges: small classifiers of different families (registry)
  c2st.py      classifier two-sample test: k-fold accuracy of each judge, the strongest as verdict
  utility.py   do the fakes help a classifier? real / real + fake / fake-only training, tested on reals

Importing this package (or color, features, embed, quality) loads numpy only: torch, piqa,
matplotlib, scipy and scikit-learn are imported inside the functions that need them, so the CLI
starts fast and training code can call `quality.sliced_wasserstein` cheaply.
"""
