# Reference values for sipas_lib.reliability.agreement.cohen_kappa (issue 13, the re-check).
#
# Run from the project root:  Rscript tests/r/kappa.R
# Writes the fixture tests/fixtures/agreement/kappa_pairs.csv (seeded) and prints the reference values
# that tests/test_agreement.py holds, pasted with this script named beside them. The tests never call R.
#
# Sources: psych::cohen.kappa (kappa, weighted kappa, the variance of unweighted kappa and the
# confidence bounds) and vcd::Kappa (the asymptotic standard error of weighted kappa).
# Why two packages: psych's variance of *weighted* kappa departs from Fleiss, Cohen & Everitt (1969):
# psych computes the column term as  roww <- rowSums(w * rs), i.e. p_j. * sum_k w_jk, where the formula
# has  wbar_.j = sum_i p_i. w_ij.  For identity weights (unweighted kappa) both agree; for linear or
# quadratic weights psych's variance is too small or even negative (then set to 0). vcd::Kappa implements
# Fleiss, Cohen & Everitt (1969); the Monte Carlo check at the end shows which variance matches the
# sampling variance of weighted kappa.
suppressPackageStartupMessages({ library(psych); library(vcd) })
cat("R", R.version.string, "psych", as.character(packageVersion("psych")),
    "vcd", as.character(packageVersion("vcd")), "\n")

# ---------------------------------------------------------------- fixture
# 160 pairs (original answer, answer re-asked at the re-check) on the 1-5 scale: the second rating is the
# first moved by -1, 0 or +1 (more often up), a few moved by 2; group "B" never uses category 1;
# four pairs miss one of the two answers (dropped pairwise).
set.seed(20251113)
n_a <- 110; n_b <- 50
first_a <- sample(1:5, n_a, replace = TRUE, prob = c(.08, .12, .20, .35, .25))
first_b <- sample(2:5, n_b, replace = TRUE, prob = c(.10, .20, .40, .30))
first <- c(first_a, first_b)
shift <- sample(c(-2, -1, 0, 1, 2), length(first), replace = TRUE, prob = c(.03, .12, .55, .25, .05))
second <- pmin(5, pmax(1, first + shift))
second[n_a + which(second[(n_a + 1):(n_a + n_b)] == 1)] <- 2     # group B: no category 1
group <- rep(c("A", "B"), c(n_a, n_b))
first[c(7, 40)] <- NA
second[c(75, 130)] <- NA
pairs <- data.frame(group = group, first = first, second = second)
out_dir <- file.path("tests", "fixtures", "agreement")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
write.csv(pairs, file.path(out_dir, "kappa_pairs.csv"), row.names = FALSE, na = "")

# ---------------------------------------------------------------- references
linear_w <- function(k) 1 - abs(outer(1:k, 1:k, "-")) / (k - 1)
show <- function(label, x) cat(sprintf("%-34s %s\n", label, paste(sprintf("%.15g", x), collapse = ", ")))
report <- function(d, tag) {
  d <- d[complete.cases(d[, c("first", "second")]), ]
  cat("--- ", tag, ": n = ", nrow(d), "\n", sep = "")
  q <- cohen.kappa(d[, c("first", "second")], levels = 1:5)              # default w: quadratic
  l <- cohen.kappa(d[, c("first", "second")], w = linear_w(5), levels = 1:5)
  show("psych kappa", q$kappa)
  show("psych var.kappa", q$var.kappa)
  show("psych confid unweighted (lo, hi)", q$confid[1, c(1, 3)])
  show("psych weighted.kappa quadratic", q$weighted.kappa)
  show("psych weighted.kappa linear", l$weighted.kappa)
  show("psych var.weighted quadratic", q$var.weighted)
  show("psych var.weighted linear", l$var.weighted)
  tab <- table(factor(d$first, levels = 1:5), factor(d$second, levels = 1:5))
  v_l <- Kappa(tab, weights = "Equal-Spacing")
  v_q <- Kappa(tab, weights = "Fleiss-Cohen")
  show("vcd Unweighted (value, ASE)", v_l$Unweighted)
  show("vcd Weighted linear (value, ASE)", v_l$Weighted)
  show("vcd Weighted quadratic (value, ASE)", v_q$Weighted)
  show("exact agreement", mean(d$first == d$second))
}
report(pairs, "all")
report(pairs[pairs$group == "A", ], "A")
report(pairs[pairs$group == "B", ], "B")
cat("--- 95% CI of vcd (all, quadratic):", with(list(v = Kappa(table(factor(pairs$first, levels = 1:5),
    factor(pairs$second, levels = 1:5)), weights = "Fleiss-Cohen")$Weighted),
    sprintf("%.15g, %.15g", max(-1, v[1] - qnorm(.975) * v[2]), min(1, v[1] + qnorm(.975) * v[2]))), "\n")

# ---------------------------------------------------------------- Monte Carlo: which variance is right
# Multinomial draws of n pairs from the fixture's own table: the sampling variance of quadratic-weighted
# kappa against vcd's (Fleiss, Cohen & Everitt) and psych's asymptotic variance.
d <- pairs[complete.cases(pairs[, c("first", "second")]), ]
tab <- table(factor(d$first, levels = 1:5), factor(d$second, levels = 1:5))
wk <- function(t) { p <- t / sum(t); w <- 1 - (abs(outer(1:5, 1:5, "-")) / 4)^2
  po <- sum(w * p); pc <- sum(w * outer(rowSums(p), colSums(p))); (po - pc) / (1 - pc) }
set.seed(1)
sims <- replicate(20000, wk(matrix(rmultinom(1, sum(tab), as.vector(tab) / sum(tab)), 5, 5)))
cat(sprintf("Monte Carlo var %.6g; vcd (FCE 1969) %.6g; psych %.6g\n", var(sims),
            Kappa(tab, weights = "Fleiss-Cohen")$Weighted[2]^2,
            cohen.kappa(d[, c("first", "second")], levels = 1:5)$var.weighted))
