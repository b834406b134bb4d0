# R side of bench/bench_estimation.py (called by it with Rscript; not meant to run alone).
# Usage: Rscript bench/r/bench_estimation.R <workdir> <r_domains>
# Reads <workdir>/bench.csv, m_prov.csv, m_agesex.csv; writes r_result.json (median seconds),
# r_se1.csv (task 1 estimates and SEs) and r_se3.csv (task 3, measured provinces).
suppressPackageStartupMessages({library(survey); library(data.table); library(jsonlite)})
args <- commandArgs(TRUE)
wd <- args[1]
nd <- as.integer(args[2])
df <- as.data.frame(fread(file.path(wd, "bench.csv")))
mp <- read.csv(file.path(wd, "m_prov.csv"))
ma <- read.csv(file.path(wd, "m_agesex.csv"))
sats <- sprintf("s%02d", 1:26)
f <- as.formula(paste("~", paste(sats, collapse = "+")))
d <- svydesign(ids = ~dist, strata = ~prov, weights = ~w, data = df)
timed <- function(fn, reps) {
  t <- numeric(reps)
  for (i in seq_len(reps)) t[i] <- system.time(r <- fn())[["elapsed"]]
  list(t = median(t), r = r)
}
# 1. 26 shares by province, Taylor SEs
a <- timed(function() svyby(f, ~prov, d, svymean), 3)
est1 <- as.matrix(as.data.frame(a$r)[, sats])
se1 <- as.matrix(SE(a$r))
out1 <- data.frame(variable = rep(sats, each = nrow(est1)), prov = rep(a$r$prov, length(sats)),
                   r_estimate = as.vector(est1), r_se = as.vector(se1))
write.csv(out1, file.path(wd, "r_se1.csv"), row.names = FALSE)
# 2. raking on two margins (R defaults: maxit 10, epsilon 1)
b <- timed(function() rake(d, list(~prov, ~agesex), list(mp, ma)), 3)
raked <- b$r
# 3. 26 shares by province after raking: svyby computes each domain on the whole raked design;
#    time the first nd provinces one by one (what svyby does per domain) and scale to 63
provs <- sort(unique(df$prov))[seq_len(nd)]
t3 <- 0
rows3 <- list()
for (p in provs) {
  tt <- system.time(m <- svymean(f, subset(raked, prov == p)))[["elapsed"]]
  t3 <- t3 + tt
  rows3[[length(rows3) + 1]] <- data.frame(variable = sats, prov = p, r_estimate = as.vector(coef(m)),
                                           r_se = as.vector(SE(m)))
}
write.csv(do.call(rbind, rows3), file.path(wd, "r_se3.csv"), row.names = FALSE)
res <- list(taylor_by_province = a$t, rake_two_margins = b$t,
            calibrated_by_province = t3 * length(unique(df$prov)) / nd,
            calibrated_subset = t3, r_domains = nd, raked_weight_sum = sum(weights(raked)),
            R = R.version.string, survey = as.character(packageVersion("survey")))
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA), file.path(wd, "r_result.json"))
