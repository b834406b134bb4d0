# Reference values for sipas_lib.reliability (issue 5).
#
# Run from the project root:  Rscript tests/r/psych_reference.R
# Writes tests/fixtures/reliability/{bfi_items.csv, sipas_sim.csv, psych_reference.json}.
# The tests (tests/test_reliability.py) read only those files; they never call R.
#
# Sources: psych::alpha, psych::polychoric, psych::omega, psych::KMO,
# psych::cortest.bartlett, psych::fa, psych::fa.parallel (deterministic parts only)
# and lavaan::cfa + lavaan::fitMeasures / standardizedSolution.
suppressPackageStartupMessages({
  library(psych); library(lavaan); library(GPArotation); library(jsonlite)
})
out_dir <- file.path("tests", "fixtures", "reliability")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

versions <- list(R = R.version.string,
                 psych = as.character(packageVersion("psych")),
                 lavaan = as.character(packageVersion("lavaan")),
                 GPArotation = as.character(packageVersion("GPArotation")))

# ---------------------------------------------------------------- data
data(bfi, package = "psych")
bfi_items <- bfi[, 1:25]                      # A1..O5, 6-point items with missing values
write.csv(bfi_items, file.path(out_dir, "bfi_items.csv"), row.names = FALSE, na = "")

# Simulated SIPAS set: 5 elements (c01-c05, c06-c09, c10-c12, c13-c14, c15-c18),
# correlated latent factors, 5-point ratings, section V only for respondents who gave
# feedback (structurally missing otherwise), plus 2 % item non-response.
set.seed(20250105)
n <- 1200
elements <- list(E1 = sprintf("c%02d", 1:5), E2 = sprintf("c%02d", 6:9),
                 E3 = sprintf("c%02d", 10:12), E4 = sprintf("c%02d", 13:14),
                 E5 = sprintf("c%02d", 15:18))
Phi <- matrix(0.55, 5, 5); diag(Phi) <- 1
F <- matrix(rnorm(n * 5), n) %*% chol(Phi)
items <- unlist(elements)
lam <- c(0.80, 0.75, 0.70, 0.65, 0.72, 0.78, 0.70, 0.66, 0.74, 0.82, 0.77, 0.71,
         0.80, 0.76, 0.79, 0.73, 0.69, 0.75)
fac <- rep(1:5, times = lengths(elements))
latent <- sweep(F[, fac], 2, lam, "*") + sweep(matrix(rnorm(n * 18), n), 2, sqrt(1 - lam^2), "*")
cuts <- c(-Inf, -1.9, -1.2, -0.3, 0.8, Inf)
sim <- as.data.frame(apply(latent, 2, function(z) as.numeric(cut(z, cuts))))
names(sim) <- items
gave_feedback <- runif(n) < 0.45
sim[!gave_feedback, elements$E5] <- NA
miss <- matrix(runif(n * 18) < 0.02, n)
sim[miss] <- NA
sim$gave_feedback <- gave_feedback
sim$unit_type <- ifelse(runif(n) < 0.4, "department", "district")
write.csv(sim, file.path(out_dir, "sipas_sim.csv"), row.names = FALSE, na = "")

# ---------------------------------------------------------------- helpers
alpha_ref <- function(x) {
  a <- suppressWarnings(psych::alpha(x, warnings = FALSE))
  list(items = names(x), n_rows = nrow(x),
       raw_alpha = a$total$raw_alpha, std_alpha = a$total$std.alpha,
       G6 = a$total[["G6(smc)"]], average_r = a$total$average_r, ase = a$total$ase,
       feldt_lower = unname(unlist(a$feldt$lower.ci)), feldt_upper = unname(unlist(a$feldt$upper.ci)),
       alpha_drop_raw = a$alpha.drop$raw_alpha, alpha_drop_std = a$alpha.drop$std.alpha,
       raw_r = a$item.stats$raw.r, std_r = a$item.stats$std.r,
       r_cor = a$item.stats$r.cor, r_drop = a$item.stats$r.drop,
       mean = a$item.stats$mean, sd = a$item.stats$sd, n = a$item.stats$n)
}
fa_ref <- function(x, nf, fm, rotate) {
  f <- suppressWarnings(fa(x, nfactors = nf, fm = fm, rotate = rotate, warnings = FALSE))
  list(items = names(x), nfactors = nf, fm = fm, rotate = rotate,
       loadings = unclass(f$loadings), communality = unname(f$communality),
       uniquenesses = unname(f$uniquenesses),
       Phi = if (is.null(f$Phi)) NULL else unclass(f$Phi), values = f$values)
}
omega_ref <- function(x, nf) {
  o <- suppressWarnings(omega(x, nfactors = nf, plot = FALSE))
  list(items = names(x), nfactors = nf, omega_h = o$omega_h, omega_tot = o$omega.tot,
       alpha = o$alpha, G6 = o$G6, omega_lim = o$omega.lim,
       g_loadings = unname(o$schmid$sl[, "g"]), h2 = unname(o$schmid$sl[, "h2"]),
       u2 = unname(o$schmid$sl[, "u2"]))
}
cfa_ref <- function(model, data) {
  fit <- cfa(model, data = data)          # ML, listwise deletion, first loading fixed to 1
  fm <- fitMeasures(fit, c("npar", "chisq", "df", "pvalue", "baseline.chisq", "baseline.df",
                           "cfi", "tli", "rmsea", "rmsea.ci.lower", "rmsea.ci.upper",
                           "rmsea.pvalue", "srmr", "aic", "bic"))
  ss <- standardizedSolution(fit)
  ld <- ss[ss$op == "=~", ]
  th <- ss[ss$op == "~~" & ss$lhs == ss$rhs & ss$lhs %in% ld$rhs, ]
  cr <- sapply(split(ld, ld$lhs), function(d) {
    s <- sum(d$est.std); s^2 / (s^2 + sum(1 - d$est.std^2)) })
  ave <- sapply(split(ld, ld$lhs), function(d) mean(d$est.std^2))
  pe <- parameterEstimates(fit)
  pl <- pe[pe$op == "=~", ]
  list(nobs = lavInspect(fit, "nobs"), fit = as.list(fm),
       std_loadings = data.frame(factor = ld$lhs, item = ld$rhs, est = ld$est.std),
       raw_loadings = data.frame(factor = pl$lhs, item = pl$rhs, est = pl$est, se = pl$se),
       cr = as.list(cr), ave = as.list(ave))
}

ref <- list(versions = versions)

# ---------------------------------------------------------------- bfi
A <- bfi_items[, c("A2", "A3", "A4", "A5")]
C <- bfi_items[, c("C1", "C2", "C3")]
ref$bfi_alpha_A <- alpha_ref(A)
ref$bfi_alpha_C <- alpha_ref(C)
ref$bfi_alpha_all <- alpha_ref(bfi_items[, c("A2", "A3", "A4", "A5", "C1", "C2", "C3", "E3", "E4", "E5", "O1", "O3")])
ref$bfi_polychoric <- list(items = names(bfi_items)[1:10],
                           rho = unclass(polychoric(bfi_items[, 1:10])$rho),
                           tau = unclass(polychoric(bfi_items[, 1:10])$tau))
ref$bfi_omega <- omega_ref(bfi_items[, 1:15], 3)
k <- KMO(bfi_items)
ref$bfi_kmo <- list(items = names(bfi_items), MSA = k$MSA, MSAi = unname(k$MSAi))
b <- cortest.bartlett(cor(bfi_items, use = "pairwise"), n = nrow(bfi_items))
ref$bfi_bartlett <- list(chisq = b$chisq, df = b$df, p_value = b$p.value, n = nrow(bfi_items))
ref$bfi_fa_minres_oblimin <- fa_ref(bfi_items, 5, "minres", "oblimin")
ref$bfi_fa_ml_varimax <- fa_ref(bfi_items, 5, "ml", "varimax")
ref$bfi_fa_minres_varimax <- fa_ref(bfi_items, 5, "minres", "varimax")
set.seed(1)
pa <- fa.parallel(bfi_items, plot = FALSE)
ref$bfi_parallel <- list(pc_values = pa$pc.values, fa_values = pa$fa.values)
bfi_model <- "A =~ A1 + A2 + A3 + A4 + A5
C =~ C1 + C2 + C3 + C4 + C5
E =~ E1 + E2 + E3 + E4 + E5
N =~ N1 + N2 + N3 + N4 + N5
O =~ O1 + O2 + O3 + O4 + O5"
ref$bfi_cfa <- cfa_ref(bfi_model, bfi_items)

# ---------------------------------------------------------------- SIPAS simulation
for (e in names(elements)) {
  d <- sim[, elements[[e]]]
  if (e == "E5") d <- d[sim$gave_feedback, ]
  ref[[paste0("sipas_alpha_", e)]] <- alpha_ref(d)
}
fb <- sim[sim$gave_feedback, items]
ref$sipas_alpha_all_feedback <- alpha_ref(fb)
ref$sipas_polychoric <- list(items = items, rho = unclass(polychoric(sim[, items])$rho),
                             tau = unclass(polychoric(sim[, items])$tau))
ref$sipas_polychoric_E1 <- list(items = elements$E1, rho = unclass(polychoric(sim[, elements$E1])$rho))
loc <- sim[, elements$E1]
loc$c01[!is.na(loc$c01) & loc$c01 == 5] <- 4      # c01 has 4 categories: psych sets global = FALSE
ref$sipas_polychoric_local <- list(items = elements$E1, rho = unclass(suppressWarnings(polychoric(loc))$rho))
ref$sipas_omega <- omega_ref(fb, 5)
k <- KMO(fb)
ref$sipas_kmo <- list(items = items, MSA = k$MSA, MSAi = unname(k$MSAi))
b <- cortest.bartlett(cor(fb, use = "pairwise"), n = nrow(fb))
ref$sipas_bartlett <- list(chisq = b$chisq, df = b$df, p_value = b$p.value, n = nrow(fb))
ref$sipas_fa_minres_oblimin <- fa_ref(fb, 5, "minres", "oblimin")
ref$sipas_fa_ml_oblimin <- fa_ref(fb, 5, "ml", "oblimin")
set.seed(1)
pa <- fa.parallel(fb, plot = FALSE)
ref$sipas_parallel <- list(pc_values = pa$pc.values, fa_values = pa$fa.values)
sipas_model <- paste(sapply(names(elements), function(e)
  paste(e, "=~", paste(elements[[e]], collapse = " + "))), collapse = "\n")
ref$sipas_cfa <- cfa_ref(sipas_model, fb)
ref$sipas_cfa$model <- sipas_model

writeLines(toJSON(ref, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"),
           file.path(out_dir, "psych_reference.json"))
cat("wrote", file.path(out_dir, "psych_reference.json"), "\n")
