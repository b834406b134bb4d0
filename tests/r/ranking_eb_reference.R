# Reference values for sipas_lib.ranking.empirical_bayes (normal-normal empirical Bayes).
# Run: Rscript tests/r/ranking_eb_reference.R  (writes tests/fixtures/ranking/eb_reference.csv)
suppressPackageStartupMessages(library(metafor))
y  <- c(0.912, 0.874, 0.853, 0.901, 0.822, 0.866, 0.795, 0.889, 0.840, 0.930, 0.858, 0.815)
se <- c(0.015, 0.022, 0.018, 0.030, 0.025, 0.012, 0.028, 0.020, 0.016, 0.019, 0.024, 0.021)
out <- NULL
for (m in c("REML", "DL")) {
  fit <- rma(yi = y, sei = se, method = m, control = list(threshold = 1e-12))
  b <- blup(fit)
  out <- rbind(out, data.frame(method = tolower(m), unit = seq_along(y), estimate = y, se = se,
                               mu = as.numeric(fit$b), tau2 = fit$tau2, eb_estimate = b$pred))
}
out$source <- paste0("metafor ", packageVersion("metafor"), " rma(method=..., control=list(threshold=1e-12)) + blup(); ", R.version.string)
write.csv(out, "tests/fixtures/ranking/eb_reference.csv", row.names = FALSE)
