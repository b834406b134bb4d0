# Reference values for sipas_lib.small_area (tests/test_small_area.py): the Fay-Herriot model as a
# meta-regression in R metafor (Viechtbauer 2010). rma(yi, vi, mods = ~ x1 + x2, method = "REML")
# gives the area variance (tau2), the coefficients and their SEs; blup() the EBLUPs.
#
# Run from the repository root:  Rscript tests/r/small_area_reference.R
# Writes tests/fixtures/small_area/{areas.csv, reference_areas.csv, reference_model.csv}.
suppressPackageStartupMessages(library(metafor))
out <- "tests/fixtures/small_area"
dir.create(out, showWarnings = FALSE, recursive = TRUE)

set.seed(20251)
m <- 40
n <- sample(15:120, m, replace = TRUE)
x1 <- round(runif(m, 0.6, 0.98), 4)           # e.g. on-time resolution rate
x2 <- round(rpois(m, 20) / 1, 4)               # e.g. complaints per 1,000 dossiers
theta <- 0.35 + 0.55 * x1 - 0.004 * x2 + rnorm(m, 0, 0.035)
p <- pmin(pmax(theta + rnorm(m, 0, sqrt(0.2 / n)), 0.01), 0.99)
se <- sqrt(p * (1 - p) / n * 1.3)
areas <- data.frame(unit_id = sprintf("A%02d", 1:m), n = n, estimate = round(p, 6), se = round(se, 6),
                    x1 = x1, x2 = x2)
write.csv(areas, file.path(out, "areas.csv"), row.names = FALSE)

ctrl <- list(threshold = 1e-12, maxiter = 2000, stepadj = 0.5)
rows <- list(); model <- list()
for (meth in c("REML", "ML")) {
  fit <- rma(yi = estimate, vi = se^2, mods = ~ x1 + x2, data = areas, method = meth, control = ctrl)
  b <- blup(fit)
  rows[[meth]] <- data.frame(method = meth, unit_id = areas$unit_id, blup = sprintf("%.15g", b$pred))
  model[[meth]] <- data.frame(method = meth, term = c("intercept", "x1", "x2", "area_variance"),
                              estimate = sprintf("%.15g", c(coef(fit), fit$tau2)),
                              se = sprintf("%.15g", c(fit$se, NA)))
}
write.csv(do.call(rbind, rows), file.path(out, "reference_areas.csv"), row.names = FALSE, quote = FALSE)
write.csv(do.call(rbind, model), file.path(out, "reference_model.csv"), row.names = FALSE, quote = FALSE)
cat(sprintf("metafor %s, R %s\n", packageVersion("metafor"), getRversion()))
