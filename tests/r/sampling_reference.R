# Reference values for tests/test_sampling.py: first-order inclusion probabilities of a
# fixed-size PPS design, R package `sampling` (Tillé & Matei), function inclusionprobabilities(a, n).
# Run from the project root:  Rscript tests/r/sampling_reference.R
# Writes tests/fixtures/sampling/inclusionprobabilities.csv and .../r_versions.json.
suppressPackageStartupMessages(library(sampling))

out_dir <- file.path("tests", "fixtures", "sampling")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

set.seed(20251122)
examples <- list(
  # a classic small case: one unit capped at 1
  list(name = "small", a = c(1, 2, 3, 30), n = 2),
  # skewed sizes (lognormal + a few very large units): several rounds of capping
  list(name = "skewed", a = round(c(rlnorm(36, meanlog = 3, sdlog = 1), 900, 1500, 2500, 4000)), n = 12),
  # no capping needed: pi = n a / sum(a)
  list(name = "nocap", a = 1:20, n = 5),
  # zero sizes (never selected) next to a capped unit
  list(name = "zeros", a = c(0, 5, 0, 10, 200, 15, 20), n = 3),
  # n equal to the number of positive sizes: every positive unit certain
  list(name = "census", a = c(3, 0, 7, 1), n = 3)
)

rows <- do.call(rbind, lapply(examples, function(ex) {
  pik <- suppressWarnings(inclusionprobabilities(ex$a, ex$n))
  data.frame(example = ex$name, k = seq_along(ex$a), a = ex$a, n = ex$n, pik = pik)
}))
write.csv(rows, file.path(out_dir, "inclusionprobabilities.csv"), row.names = FALSE)

versions <- sprintf(
  '{"R": "%s", "sampling": "%s", "function": "sampling::inclusionprobabilities(a, n)"}\n',
  paste(R.version$major, R.version$minor, sep = "."), as.character(packageVersion("sampling"))
)
cat(versions, file = file.path(out_dir, "r_versions.json"))
