# Reference values for sipas_lib.estimation / sipas_lib.weighting from R's survey package.
#
# Run from the project root:  Rscript tests/r/survey_reference.R
# Writes tests/fixtures/survey/{apistrat,apiclus1,apiclus2,sipas_sim}.csv (inputs) and
# tests/fixtures/survey/reference.csv (one row per estimate: case, estimator, variable, domain,
# estimate, se, ci_low, ci_high, deff) plus reference_weights.csv (weights after calibration) and
# reference_meta.csv (R and survey versions).
suppressPackageStartupMessages(library(survey))
options(survey.lonely.psu = "fail")
out_dir <- file.path("tests", "fixtures", "survey")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
data(api)
keep <- c("cds", "stype", "dnum", "snum", "pw", "fpc", "api00", "api99", "enroll", "avg.ed",
          "sch.wide", "awards", "meals", "both")
write.csv(apistrat[, keep], file.path(out_dir, "apistrat.csv"), row.names = FALSE)
write.csv(apiclus1[, keep], file.path(out_dir, "apiclus1.csv"), row.names = FALSE)
write.csv(apiclus2[, c("cds", "stype", "dnum", "snum", "pw", "fpc1", "fpc2", "api00", "api99",
                       "enroll", "sch.wide", "awards")], file.path(out_dir, "apiclus2.csv"), row.names = FALSE)

rows <- list()
add <- function(case, estimator, variable, domain, est, se, lo = NA, hi = NA, deff = NA) {
  rows[[length(rows) + 1]] <<- data.frame(case = case, estimator = estimator, variable = variable,
    domain = as.character(domain), estimate = as.numeric(est), se = as.numeric(se),
    ci_low = as.numeric(lo), ci_high = as.numeric(hi), deff = as.numeric(deff))
}
# svymean / svytotal of several variables (one call per variable, na.rm=TRUE as sipas_lib does)
stat_all <- function(case, design, vars, fun, estname) {
  for (v in vars) {
    f <- as.formula(paste0("~`", v, "`"))
    s <- fun(f, design, na.rm = TRUE, deff = TRUE)
    ci <- confint(s)
    dv <- if (inherits(design, "svyrep.design")) NA else deff(s)
    add(case, estname, v, "", coef(s), SE(s), ci[, 1], ci[, 2], dv)
  }
}
stat_by <- function(case, design, vars, by, fun, estname) {
  for (v in vars) {
    f <- as.formula(paste0("~`", v, "`"))
    isrep <- inherits(design, "svyrep.design")
    s <- if (isrep) svyby(f, as.formula(paste0("~", by)), design, fun, na.rm = TRUE)
         else svyby(f, as.formula(paste0("~", by)), design, fun, na.rm = TRUE, deff = TRUE)
    ci <- confint(s)
    dv <- if (isrep) NA else deff(s)
    add(case, estname, v, s[[by]], coef(s), SE(s), ci[, 1], ci[, 2], dv)
  }
}
ratio_all <- function(case, design, num, den, by = NULL) {
  if (is.null(by)) {
    r <- svyratio(as.formula(paste0("~", num)), as.formula(paste0("~", den)), design, na.rm = TRUE, deff = TRUE)
    ci <- confint(r)
    add(case, "ratio", paste0(num, "/", den), "", coef(r), SE(r), ci[, 1], ci[, 2], attr(r, "deff"))
  } else {
    r <- svyby(as.formula(paste0("~", num)), as.formula(paste0("~", by)), design, svyratio,
               denominator = as.formula(paste0("~", den)), na.rm = TRUE, deff = TRUE)
    ci <- confint(r)
    add(case, "ratio", paste0(num, "/", den), r[[by]], coef(r), SE(r), ci[, 1], ci[, 2], deff(r))
  }
}
ciprop <- function(case, design, var, by = NULL, methods = c("logit", "beta")) {
  f <- as.formula(paste0("~`", var, "`"))
  for (m in methods) {
    if (is.null(by)) {
      s <- svyciprop(f, design, method = m)
      ci <- attr(s, "ci")
      add(case, paste0("prop_", m), var, "", as.numeric(s), sqrt(as.numeric(attr(s, "var"))), ci[1], ci[2])
    } else {
      s <- svyby(f, as.formula(paste0("~", by)), design, svyciprop, method = m, vartype = c("se", "ci"))
      add(case, paste0("prop_", m), var, s[[by]], coef(s), SE(s), s$ci_l, s$ci_u)
    }
  }
}
weights_out <- list()
save_w <- function(case, design) {
  weights_out[[case]] <<- data.frame(case = case, row = seq_len(nrow(design)), w = weights(design))
}

# ---- apistrat: stratified, fpc -------------------------------------------------------------
apistrat$sw <- as.numeric(apistrat$sch.wide == "Yes")
write.csv(apistrat[, c(keep, "sw")], file.path(out_dir, "apistrat.csv"), row.names = FALSE)
dstrat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, data = apistrat, fpc = ~fpc)
stat_all("strat", dstrat, c("api00", "enroll", "avg.ed"), svymean, "mean")
stat_all("strat", dstrat, c("api00", "enroll"), svytotal, "total")
stat_by("strat", dstrat, c("api00", "avg.ed"), "awards", svymean, "mean")
stat_by("strat", dstrat, c("enroll"), "awards", svytotal, "total")
ratio_all("strat", dstrat, "api00", "api99")
ratio_all("strat", dstrat, "api00", "api99", by = "awards")
ciprop("strat", dstrat, "sw")
ciprop("strat", dstrat, "sw", by = "awards")
add("strat", "degf", "", "", degf(dstrat), NA)
# total_covariance: vcov of svytotal of two variables
tc <- vcov(svytotal(~api00 + enroll, dstrat))
add("strat", "vcov_total", "api00,api00", "", tc[1, 1], NA)
add("strat", "vcov_total", "api00,enroll", "", tc[1, 2], NA)
add("strat", "vcov_total", "enroll,enroll", "", tc[2, 2], NA)
# JKn replicate design
rstrat <- as.svrepdesign(dstrat, type = "JKn")
stat_all("strat_jkn", rstrat, c("api00", "enroll"), svymean, "mean")
stat_all("strat_jkn", rstrat, c("enroll"), svytotal, "total")
stat_by("strat_jkn", rstrat, c("api00"), "awards", svymean, "mean")
rr <- svyratio(~api00, ~api99, rstrat)
add("strat_jkn", "ratio", "api00/api99", "", coef(rr), SE(rr))

# ---- apiclus1: one-stage cluster, fpc ------------------------------------------------------
apiclus1$sw <- as.numeric(apiclus1$sch.wide == "Yes")
write.csv(apiclus1[, c(keep, "sw")], file.path(out_dir, "apiclus1.csv"), row.names = FALSE)
dclus1 <- svydesign(id = ~dnum, weights = ~pw, data = apiclus1, fpc = ~fpc)
stat_all("clus1", dclus1, c("api00", "enroll", "avg.ed"), svymean, "mean")
stat_all("clus1", dclus1, c("api00", "enroll"), svytotal, "total")
stat_by("clus1", dclus1, c("api00", "avg.ed"), "stype", svymean, "mean")
stat_by("clus1", dclus1, c("enroll"), "stype", svytotal, "total")
ratio_all("clus1", dclus1, "api00", "api99")
ratio_all("clus1", dclus1, "api00", "api99", by = "stype")
ciprop("clus1", dclus1, "sw")
ciprop("clus1", dclus1, "sw", by = "stype")
add("clus1", "degf", "", "", degf(dclus1), NA)
rclus1 <- as.svrepdesign(dclus1, type = "JK1")
stat_all("clus1_jk1", rclus1, c("api00", "enroll"), svymean, "mean")
stat_all("clus1_jk1", rclus1, c("enroll"), svytotal, "total")
stat_by("clus1_jk1", rclus1, c("api00"), "stype", svymean, "mean")

# postStratify on school type
pop.types <- data.frame(stype = c("E", "H", "M"), Freq = c(4421, 755, 1018))
dps <- postStratify(dclus1, ~stype, pop.types)
save_w("clus1_ps", dps)
stat_all("clus1_ps", dps, c("api00", "enroll", "avg.ed"), svymean, "mean")
stat_all("clus1_ps", dps, c("enroll"), svytotal, "total")
stat_by("clus1_ps", dps, c("api00"), "awards", svymean, "mean")
stat_by("clus1_ps", dps, c("api00"), "stype", svymean, "mean")
ratio_all("clus1_ps", dps, "api00", "api99")
ciprop("clus1_ps", dps, "sw", by = "awards")
tc <- vcov(svytotal(~api00 + enroll, dps))
add("clus1_ps", "vcov_total", "api00,enroll", "", tc[1, 2], NA)
add("clus1_ps", "vcov_total", "enroll,enroll", "", tc[2, 2], NA)

# rake on school type and sch.wide (R defaults: maxit 10, epsilon 1)
pop.schwide <- data.frame(sch.wide = c("No", "Yes"), Freq = c(1072, 5122))
drake <- rake(dclus1, list(~stype, ~sch.wide), list(pop.types, pop.schwide))
save_w("clus1_rake", drake)
stat_all("clus1_rake", drake, c("api00", "enroll", "avg.ed"), svymean, "mean")
stat_all("clus1_rake", drake, c("enroll"), svytotal, "total")
stat_by("clus1_rake", drake, c("api00"), "awards", svymean, "mean")
ratio_all("clus1_rake", drake, "api00", "api99", by = "awards")
ciprop("clus1_rake", drake, "sw", by = "awards")
tc <- vcov(svytotal(~api00 + enroll, drake))
add("clus1_rake", "vcov_total", "api00,enroll", "", tc[1, 2], NA)
# tight raking
drake2 <- rake(dclus1, list(~stype, ~sch.wide), list(pop.types, pop.schwide),
               control = list(maxit = 100, epsilon = 1e-10))
save_w("clus1_rake_tight", drake2)
stat_all("clus1_rake_tight", drake2, c("api00"), svymean, "mean")

# linear (GREG) calibration: stype + api99
dcal <- calibrate(dclus1, ~stype + api99, c(6194, 755, 1018, 3914069))
save_w("clus1_cal", dcal)
stat_all("clus1_cal", dcal, c("api00", "enroll", "avg.ed"), svymean, "mean")
stat_all("clus1_cal", dcal, c("enroll", "api00"), svytotal, "total")
stat_by("clus1_cal", dcal, c("api00"), "awards", svymean, "mean")
ratio_all("clus1_cal", dcal, "api00", "enroll")
ciprop("clus1_cal", dcal, "sw", by = "awards")
# calibration after post-stratification (two postStrata entries)
dpscal <- calibrate(dps, ~api99, c(6194, 3914069))
save_w("clus1_ps_cal", dpscal)
stat_all("clus1_ps_cal", dpscal, c("api00", "enroll"), svymean, "mean")

# trimWeights of the calibrated design
dtrim <- trimWeights(dcal, upper = 38, lower = 30)
save_w("clus1_cal_trim", dtrim)
stat_all("clus1_cal_trim", dtrim, c("api00", "enroll"), svymean, "mean")
dtrim2 <- trimWeights(dcal, upper = 38, lower = 30, strict = TRUE)
save_w("clus1_cal_trim_strict", dtrim2)

# calibration of a replicate design: every replicate is recalibrated
rps <- postStratify(rclus1, ~stype, pop.types)
stat_all("clus1_jk1_ps", rps, c("api00", "enroll"), svymean, "mean")
stat_by("clus1_jk1_ps", rps, c("api00"), "awards", svymean, "mean")
rrk <- rake(rclus1, list(~stype, ~sch.wide), list(pop.types, pop.schwide))
stat_all("clus1_jk1_rake", rrk, c("api00", "enroll"), svymean, "mean")
rcal <- calibrate(rclus1, ~stype + api99, c(6194, 755, 1018, 3914069))
stat_all("clus1_jk1_cal", rcal, c("api00", "enroll"), svymean, "mean")
stat_by("clus1_jk1_cal", rcal, c("api00"), "awards", svymean, "mean")

# ---- apiclus2: two-stage cluster with fpc at both stages -----------------------------------
dclus2 <- svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, data = apiclus2)
stat_all("clus2", dclus2, c("api00", "enroll"), svymean, "mean")
stat_all("clus2", dclus2, c("api00", "enroll"), svytotal, "total")
stat_by("clus2", dclus2, c("api00"), "stype", svymean, "mean")
ratio_all("clus2", dclus2, "api00", "api99")
add("clus2", "degf", "", "", degf(dclus2), NA)
dclus2w <- svydesign(id = ~dnum + snum, weights = ~pw, data = apiclus2)
stat_all("clus2_w", dclus2w, c("api00"), svymean, "mean")

# ---- SIPAS-shaped simulated set ------------------------------------------------------------
set.seed(2025)
units <- sprintf("U%02d", 1:8)
fields <- c("justice", "labour_social", "land_environment", "construction_urban", "other")
frame <- expand.grid(unit_id = units, field = fields, stringsAsFactors = FALSE)
frame$N <- round(runif(nrow(frame), 40, 400))
frame$N[frame$unit_id == "U01"] <- 20  # a small stratum
Nh <- aggregate(N ~ unit_id, frame, sum)
nh <- setNames(c(25, rep(60, 7)), units)
sim <- do.call(rbind, lapply(units, function(u) {
  fr <- frame[frame$unit_id == u, ]
  pop <- fr[rep(seq_len(nrow(fr)), fr$N), c("unit_id", "field")]
  s <- pop[sample(nrow(pop), nh[[u]]), ]
  s$N_h <- nrow(pop)
  s
}))
n <- nrow(sim)
sim$survey_mode <- sample(c("postal", "one_stop", "online"), n, replace = TRUE, prob = c(.5, .4, .1))
sim$gender <- sample(1:2, n, replace = TRUE)
ability <- rnorm(n)
for (j in 1:6) {
  lat <- ability + rnorm(n) + 0.3 * (sim$survey_mode == "online") + 0.2 * j / 6
  sim[[sprintf("c%02d", j)]] <- as.numeric(cut(lat, c(-Inf, -1.5, -0.7, 0.2, 1.2, Inf)))
}
sim$c05[sample(n, 40)] <- NA
sim$c06[sample(n, 300)] <- NA  # feedback items: structurally missing for many
for (j in 1:6) {
  v <- sprintf("c%02d", j)
  sim[[paste0("s", substr(v, 2, 3))]] <- as.numeric(sim[[v]] >= 4)
}
sim$w <- sim$N_h / nh[sim$unit_id]
sim$row <- seq_len(n)
write.csv(sim, file.path(out_dir, "sipas_sim.csv"), row.names = FALSE)
write.csv(frame, file.path(out_dir, "sipas_sim_frame.csv"), row.names = FALSE)
items <- sprintf("c%02d", 1:6)
sats <- sprintf("s%02d", 1:6)
dsim <- svydesign(id = ~1, strata = ~unit_id, weights = ~w, fpc = ~N_h, data = sim)
stat_by("sim", dsim, items, "unit_id", svymean, "mean")
for (v in sats[1:5]) ciprop("sim", dsim, v, by = "unit_id")
stat_all("sim", dsim, sats, svymean, "mean")
# post-stratify to unit x field
pop_uf <- data.frame(unit_id = frame$unit_id, field = frame$field, Freq = frame$N)
dsim_ps <- postStratify(dsim, ~unit_id + field, pop_uf)
save_w("sim_ps", dsim_ps)
stat_by("sim_ps", dsim_ps, items, "unit_id", svymean, "mean")
for (v in sats[c(1, 6)]) ciprop("sim_ps", dsim_ps, v, by = "unit_id")
# rake to unit and field margins
pop_u <- aggregate(Freq ~ unit_id, pop_uf, sum)
pop_f <- aggregate(Freq ~ field, pop_uf, sum)
dsim_rk <- rake(dsim, list(~unit_id, ~field), list(pop_u, pop_f), control = list(maxit = 50, epsilon = 1e-9))
save_w("sim_rake", dsim_rk)
stat_by("sim_rake", dsim_rk, items, "unit_id", svymean, "mean")
stat_by("sim_rake", dsim_rk, sats, "field", svymean, "mean")
stat_all("sim_rake", dsim_rk, sats, svymean, "mean")
# lonely PSU rules: unit U01 reduced to one respondent
sim1 <- sim[!(sim$unit_id == "U01" & duplicated(sim$unit_id)), ]
sim1$w[sim1$unit_id == "U01"] <- sim1$N_h[sim1$unit_id == "U01"]
write.csv(sim1, file.path(out_dir, "sipas_sim_lonely.csv"), row.names = FALSE)
for (rule in c("adjust", "average", "certainty", "remove")) {
  options(survey.lonely.psu = rule)
  dl <- svydesign(id = ~1, strata = ~unit_id, weights = ~w, data = sim1)
  stat_all(paste0("lonely_", rule), dl, c("c01", "s01"), svymean, "mean")
  stat_all(paste0("lonely_", rule), dl, c("c01"), svytotal, "total")
}
options(survey.lonely.psu = "fail")

ref <- do.call(rbind, rows)
write.csv(ref, file.path(out_dir, "reference.csv"), row.names = FALSE)
write.csv(do.call(rbind, weights_out), file.path(out_dir, "reference_weights.csv"), row.names = FALSE)
write.csv(data.frame(R = R.version.string, survey = as.character(packageVersion("survey"))),
          file.path(out_dir, "reference_meta.csv"), row.names = FALSE)
cat("wrote", nrow(ref), "reference values\n")
