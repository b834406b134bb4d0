# Reference values for the national design (sipas_lib.weighting.build_national_design) from R survey.
#
# Run from the project root:  Rscript tests/r/national_reference.R
# Inputs (tests/fixtures/national/): a tiny national year written by sipas_lib.simulate_national
# (national_year(year=2025, seed=7, provinces=4, per_province=4, per_commune=12), its tables written
# as CSV): sample.csv (only form_id, unit_id = province, stratum = commune, incl_prob =
# pi_commune * pi_form|commune), responses.csv (only form_id, unit_id, c01-c18), psu_frame.csv (every
# commune of the 4 provinces) and frame_counts.csv. The inputs are committed; this script only reads them.
# Writes reference.csv (case, estimator, variable, domain, estimate, se) and reference_weights.csv.
#
# The design is built here from the inputs, independently of the Python code:
#   base weight 1/incl_prob; non-response adjustment within province (issued / returned base weights);
#   svydesign(ids = ~commune, strata = ~province, fpc = ~n_communes, weights = ~w_nr)
#   and the same design post-stratified to the provinces' frame totals (postStratify).
suppressPackageStartupMessages(library(survey))
options(survey.lonely.psu = "adjust")
dir <- file.path("tests", "fixtures", "national")
smp <- read.csv(file.path(dir, "sample.csv"), colClasses = c(form_id = "character"))
resp <- read.csv(file.path(dir, "responses.csv"), colClasses = c(form_id = "character"))
psu <- read.csv(file.path(dir, "psu_frame.csv"))
fc <- read.csv(file.path(dir, "frame_counts.csv"))

smp$w_base <- 1 / smp$incl_prob
smp$responded <- smp$form_id %in% resp$form_id
adj <- tapply(smp$w_base, smp$unit_id, sum) / tapply(smp$w_base * smp$responded, smp$unit_id, sum)
d <- merge(resp, smp[, c("form_id", "stratum", "w_base")], by = "form_id")
d$w_nr <- d$w_base * as.numeric(adj[d$unit_id])
d$commune <- d$stratum
n_communes <- table(psu$unit_id)
d$n_communes <- as.numeric(n_communes[d$unit_id])
for (v in c("c01", "c03", "c15")) {
  d[[paste0("sat_", v)]] <- as.numeric(d[[v]] >= 4)
  d[[paste0("ans_", v)]] <- as.numeric(!is.na(d[[v]]))
  d[[paste0("sat0_", v)]] <- ifelse(is.na(d[[v]]), 0, d[[paste0("sat_", v)]])
}

des <- svydesign(ids = ~commune, strata = ~unit_id, fpc = ~n_communes, weights = ~w_nr, data = d)
pop <- aggregate(N ~ unit_id, fc, sum)
names(pop)[2] <- "Freq"
ps <- postStratify(des, ~unit_id, pop)

rows <- list()
add <- function(case, estimator, variable, domain, est, se) {
  rows[[length(rows) + 1]] <<- data.frame(case = case, estimator = estimator, variable = variable,
    domain = as.character(domain), estimate = as.numeric(est), se = as.numeric(se))
}
for (case in c("none", "poststratify")) {
  design <- if (case == "none") des else ps
  for (v in c("c01", "c03", "c15")) {
    s <- svyby(as.formula(paste0("~sat_", v)), ~unit_id, design, svymean, na.rm = TRUE)
    add(case, "mean", paste0("sat_", v), s$unit_id, coef(s), SE(s))
    r <- svyby(as.formula(paste0("~sat0_", v)), ~unit_id, design, svyratio,
               denominator = as.formula(paste0("~ans_", v)))
    add(case, "ratio", paste0("sat0_", v, "/ans_", v), r$unit_id, coef(r), SE(r))
    m <- svymean(as.formula(paste0("~sat_", v)), design, na.rm = TRUE)
    add(case, "mean", paste0("sat_", v), "", coef(m), SE(m))
  }
}
write.csv(do.call(rbind, rows), file.path(dir, "reference.csv"), row.names = FALSE)
write.csv(data.frame(form_id = d$form_id, w_nr = d$w_nr, w_cal = weights(ps)),
          file.path(dir, "reference_weights.csv"), row.names = FALSE)
