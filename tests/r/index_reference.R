# Reference values for sipas_lib.index.satisfaction_indices (design-based SEs of criterion,
# element and overall indices). Data: tests/fixtures/index/sipas_small.csv, a SIPAS-shaped
# stratified sample (strata = unit x channel, fpc = N_h, weights = N_h / n_h) written by
# tests/test_index.py::make_small (seeded). Run from the project root:
#   Rscript tests/r/index_reference.R   -> tests/fixtures/index/index_reference.csv
suppressPackageStartupMessages(library(survey))
d <- read.csv("tests/fixtures/index/sipas_small.csv", stringsAsFactors = FALSE)
crit <- sprintf("c%02d", 1:18)
elements <- list(E1 = crit[1:5], E2 = crit[6:9], E3 = crit[10:12], E4 = crit[13:14], E5 = crit[15:18])
for (k in crit) {
  d[[paste0("s_", k)]] <- as.numeric(!is.na(d[[k]]) & d[[k]] >= 4)   # satisfied
  d[[paste0("a_", k)]] <- as.numeric(!is.na(d[[k]]))                 # answered
}
des <- svydesign(ids = ~1, strata = ~stratum, fpc = ~N_h, weights = ~w, data = d)
num <- as.formula(paste("~", paste0("s_", crit, collapse = "+")))
den <- as.formula(paste("~", paste0("a_", crit, collapse = "+")))
out <- NULL
for (u in sort(unique(d$unit_id))) {
  # domain = one unit; subset() keeps the full design information (domain estimation)
  r <- svyratio(num, den, design = subset(des, unit_id == u), covmat = TRUE)
  V <- vcov(r)
  est <- coef(r)
  nm <- paste0("s_", crit, "/a_", crit)
  p <- est[nm]
  Vu <- V[nm, nm]
  # items
  out <- rbind(out, data.frame(unit_id = u, level = "item", code = crit, estimate = as.numeric(p),
                               se = sqrt(diag(Vu))))
  # elements: mean of criterion ratios (svycontrast-equivalent linear combination)
  A <- matrix(0, nrow = length(elements), ncol = length(crit))
  for (e in seq_along(elements)) A[e, match(elements[[e]], crit)] <- 1 / length(elements[[e]])
  ee <- A %*% p
  ve <- A %*% Vu %*% t(A)
  out <- rbind(out, data.frame(unit_id = u, level = "element", code = names(elements),
                               estimate = as.numeric(ee), se = sqrt(diag(ve))))
  b <- matrix(colMeans(A), nrow = 1)   # overall = mean of the 5 element means
  out <- rbind(out, data.frame(unit_id = u, level = "overall", code = "SIPAS",
                               estimate = as.numeric(b %*% p), se = sqrt(as.numeric(b %*% Vu %*% t(b)))))
}
# pooled rule: all satisfied criterion ratings / all answered criterion ratings
d$s_tot <- rowSums(d[paste0("s_", crit)])
d$a_tot <- rowSums(d[paste0("a_", crit)])
# mean-score variant of the criterion index: ratings (0 when unanswered) / answered
for (k in crit) d[[paste0("y_", k)]] <- ifelse(is.na(d[[k]]), 0, d[[k]])
des <- svydesign(ids = ~1, strata = ~stratum, fpc = ~N_h, weights = ~w, data = d)
pool <- svyby(~s_tot, by = ~unit_id, denominator = ~a_tot, design = des, FUN = svyratio)
out <- rbind(out, data.frame(unit_id = pool$unit_id, level = "overall_pooled", code = "SIPAS",
                             estimate = pool[["s_tot/a_tot"]], se = pool[["se.s_tot/a_tot"]]))
for (k in c("c01", "c16")) {
  ms <- svyby(as.formula(paste0("~y_", k)), by = ~unit_id, denominator = as.formula(paste0("~a_", k)),
              design = des, FUN = svyratio)
  out <- rbind(out, data.frame(unit_id = ms$unit_id, level = "item_mean_score", code = k,
                               estimate = ms[[paste0("y_", k, "/a_", k)]], se = ms[[paste0("se.y_", k, "/a_", k)]]))
}
out$source <- paste0("survey ", packageVersion("survey"), " svyratio(covmat=TRUE) on subset(design, unit_id == u) + linear contrasts; svyby(svyratio) for pooled and mean score; ",
                     R.version.string)
write.csv(out, "tests/fixtures/index/index_reference.csv", row.names = FALSE)
