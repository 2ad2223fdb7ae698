#!/usr/bin/env Rscript
# Make the mice reference fixtures for mlmi's Rubin's-rules pooling (src/mlmi/pool.py).
#
#   Rscript tools/make_mice_pool_fixtures.R tests/fixtures/mice_pool.json
#
# Writes one JSON file (numbers with 17 significant digits, so every double
# round-trips exactly) with two kinds of cases:
#
# * "scalar": synthetic m x p matrices of estimates Q and within-imputation
#   variances U, pooled parameter by parameter with mice's own
#   pool.scalar(Q[, j], U[, j], n = dfcom + k, k = k) (rule "rubin1987",
#   Barnard-Rubin df). pool.scalar does not return lambda; it is computed here as
#   mice's pool.fitlist does, (1 + 1/m) * b / t. The confidence limits and
#   p-values come from mice's own summary.mipo(conf.int = TRUE) applied to a mipo
#   object built from the pool.scalar results, for the levels listed per case.
# * "pipeline": a real imputation, mice(nhanes, ...) then with(imp, lm(...)):
#   the per-imputation coef() and diag(vcov()) plus pool(fit)$pooled and
#   summary(pool(fit), conf.int = TRUE).
# * "t_quantiles", "t_pvalues": R's qt(p, df) and mice's p-value formula
#   2 * pt(|x|, max(df, 0.001), lower.tail = FALSE) on a grid of df down to 1e-4.
#
# An infinite dfcom is written as null, other infinities as the strings "Inf" and
# "-Inf". R is needed only to regenerate this file;
# the tests read the JSON.
#
# Tested with R 4.2.2, mice 3.15.0, jsonlite 1.8.4.

suppressPackageStartupMessages({
  library(mice)
  library(jsonlite)
})

RNGkind("Mersenne-Twister", "Inversion", "Rejection")

args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[[1]] else "tests/fixtures/mice_pool.json"

stopifnot(packageVersion("mice") == "3.15.0")

# ---------------------------------------------------------------------------
# Synthetic cases
# ---------------------------------------------------------------------------

# m x p estimates and variances: per parameter a true value, a within variance and
# a target fraction of missing information gamma (between = within * gamma / (1 - gamma)).
draw_case <- function(m, p, gamma = runif(p, 0.02, 0.85)) {
  theta <- rnorm(p, 0, 2)
  within <- exp(runif(p, log(0.01), log(4)))
  between <- within * gamma / (1 - gamma)
  Q <- matrix(NA_real_, m, p)
  U <- matrix(NA_real_, m, p)
  for (j in seq_len(p)) {
    Q[, j] <- theta[j] + rnorm(m, 0, sqrt(between[j]))
    U[, j] <- within[j] * rchisq(m, df = 50) / 50
  }
  list(Q = Q, U = U)
}

# The conf-int / p-value part exactly as mice computes it: a mipo object with the
# pooled rows, then mice's summary.mipo (which calls confint.mipo).
mice_summary <- function(pooled, level) {
  obj <- list(call = NULL, m = pooled$m[1], pooled = pooled, glanced = NULL)
  class(obj) <- c("mipo", "data.frame")
  s <- summary(obj, type = "all", conf.int = TRUE, conf.level = level)
  s <- as.data.frame(s)
  pct <- paste(format(100 * c((1 - level) / 2, 1 - (1 - level) / 2),
                      trim = TRUE, scientific = FALSE, digits = 3), "%")
  list(
    level = level,
    std_error = s$std.error,
    statistic = s$statistic,
    p_value = s$p.value,
    conf_low = s[[pct[1]]],
    conf_high = s[[pct[2]]]
  )
}

pool_case <- function(name, Q, U, dfcom, k, levels = 0.95, note = NULL) {
  m <- nrow(Q)
  p <- ncol(Q)
  n <- dfcom + k
  rows <- lapply(seq_len(p), function(j) {
    r <- pool.scalar(Q[, j], U[, j], n = n, k = k)
    data.frame(
      term = paste0("p", j), m = r$m, estimate = r$qbar, ubar = r$ubar, b = r$b,
      t = r$t, dfcom = dfcom, df = r$df, riv = r$r,
      lambda = (1 + 1 / m) * r$b / r$t, fmi = r$fmi
    )
  })
  pooled <- do.call(rbind, rows)
  expected <- list(
    estimate = pooled$estimate, ubar = pooled$ubar, b = pooled$b, t = pooled$t,
    df = pooled$df, riv = pooled$riv, lambda = pooled$lambda, fmi = pooled$fmi
  )
  list(
    name = name, note = note, m = m, p = p,
    dfcom = if (is.finite(dfcom)) dfcom else NULL,
    pool_scalar_n = if (is.finite(n)) n else NULL, pool_scalar_k = k,
    estimates = Q, variances = U,
    expected = lapply(expected, I),
    summaries = lapply(levels, function(l) {
      s <- lapply(mice_summary(pooled, l), I)
      s$level <- l
      s
    })
  )
}

set.seed(20250101)
scalar <- list()
add <- function(x) scalar[[length(scalar) + 1]] <<- x

# plain random cases over m in {2, 3, 5, 20, 100}, p in {1, 3}, dfcom finite and Inf
plain <- list(
  list(m = 2, p = 1, dfcom = Inf, k = 1),
  list(m = 2, p = 3, dfcom = 2997, k = 3),
  list(m = 3, p = 3, dfcom = 100, k = 3),
  list(m = 5, p = 1, dfcom = 100, k = 1),
  list(m = 5, p = 3, dfcom = Inf, k = 3),
  list(m = 20, p = 3, dfcom = 2997, k = 3),
  list(m = 20, p = 1, dfcom = Inf, k = 1),
  list(m = 100, p = 3, dfcom = 100, k = 3),
  list(m = 100, p = 1, dfcom = 2997, k = 1),
  list(m = 5, p = 3, dfcom = 5, k = 3)
)
for (cs in plain) {
  d <- draw_case(cs$m, cs$p)
  nm <- sprintf("m%d_p%d_dfcom%s", cs$m, cs$p, format(cs$dfcom))
  add(pool_case(nm, d$Q, d$U, cs$dfcom, cs$k, levels = c(0.95, 0.9)))
}

# b = 0: every imputation gives the same estimate (second parameter only, and a
# one-parameter case with dfcom = Inf). mice floors lambda at 1e-4 in the df.
d <- draw_case(5, 3)
d$Q[, 2] <- d$Q[1, 2]
add(pool_case("b0_m5_p3_dfcom100", d$Q, d$U, 100, 3,
              note = "parameter 2 has identical estimates (b = 0)"))
d <- draw_case(3, 1)
d$Q[, 1] <- 0.1
add(pool_case("b0_m3_p1_dfcomInf", d$Q, d$U, Inf, 1,
              note = "identical estimates 0.1 (b = 0), dfcom infinite"))

# tiny ubar relative to b: lambda close to 1, small df (and infinite confidence
# limits). 1 - lambda in barnard.rubin is a cancellation: the df has a relative
# rounding error of about 1e-16 * t / ubar, so pool.scalar (t = ubar + (m + 1) * b / m)
# and pool.fitlist (t = ubar + (1 + 1/m) * b), whose t can differ in the last bit,
# disagree by that much; ubar / b is kept >= 1e-7 so that stays below 1e-8.
d <- draw_case(5, 3, gamma = c(0.5, 0.5, 0.5))
d$U[, 1] <- d$U[, 1] * 1e-4
d$U[, 2] <- d$U[, 2] * 1e-6
d$U[, 3] <- d$U[, 3] * 1e-7
add(pool_case("tiny_ubar_m5_p3_dfcom2997", d$Q, d$U, 2997, 3,
              note = "ubar / b about 1e-4, 1e-6, 1e-7"))
d <- draw_case(20, 1, gamma = 0.5)
d$U[, 1] <- d$U[, 1] * 1e-6
add(pool_case("tiny_ubar_m20_p1_dfcomInf", d$Q, d$U, Inf, 1,
              note = "ubar / b about 1e-6, dfcom infinite"))

# ---------------------------------------------------------------------------
# Full mice pipelines on nhanes
# ---------------------------------------------------------------------------

pipeline_case <- function(name, m, seed, formula) {
  imp <- mice(nhanes, m = m, seed = seed, print = FALSE)
  fit <- eval(parse(text = sprintf("with(imp, lm(%s))", formula)))
  est <- t(sapply(fit$analyses, coef))
  vars <- t(sapply(fit$analyses, function(f) diag(vcov(f))))
  se <- t(sapply(fit$analyses, function(f) sqrt(diag(vcov(f)))))
  pl <- pool(fit)
  pooled <- pl$pooled
  s <- as.data.frame(summary(pl, conf.int = TRUE))
  list(
    name = name,
    call = sprintf("imp <- mice(nhanes, m = %d, seed = %d, print = FALSE); fit <- with(imp, lm(%s)); summary(pool(fit), conf.int = TRUE)",
                   m, seed, formula),
    note = paste("variances = diag(vcov(fit)); mice pools std.error^2 from broom::tidy,",
                 "which can differ from diag(vcov) in the last bit"),
    m = m, terms = colnames(est),
    nobs = nobs(fit$analyses[[1]]),
    estimates = unname(est), variances = unname(vars), std_errors = unname(se),
    pooled = list(
      estimate = pooled$estimate, ubar = pooled$ubar, b = pooled$b, t = pooled$t,
      dfcom = pooled$dfcom[1], df = pooled$df, riv = pooled$riv,
      lambda = pooled$lambda, fmi = pooled$fmi
    ),
    summary = list(
      level = 0.95,
      estimate = s$estimate, std_error = s$std.error, statistic = s$statistic,
      df = s$df, p_value = s$p.value, conf_low = s[["2.5 %"]],
      conf_high = s[["97.5 %"]]
    )
  )
}

pipeline <- list(
  pipeline_case("nhanes_m5_chl", 5, 1, "chl ~ age + bmi"),
  pipeline_case("nhanes_m20_bmi", 20, 123, "bmi ~ age + chl")
)

# ---------------------------------------------------------------------------
# R's t quantiles and mice's p-values on a grid reaching the tiny Barnard-Rubin
# df that lambda close to 1 gives (scipy's t.ppf is wrong in that far tail)
# ---------------------------------------------------------------------------

grid <- expand.grid(df = 10^seq(-4, 12, by = 0.5), p = c(0.0005, 0.025, 0.05, 0.25, 0.975))
t_quantiles <- list(df = grid$df, p = grid$p, q = qt(grid$p, grid$df))
grid <- expand.grid(df = c(1e-4, 0.01, 0.3, 1, 4.5, 30, 1e4, 1e9), x = c(0, 0.5, 1.96, 4, 40, 1e6))
t_pvalues <- list(df = grid$df, statistic = grid$x,
                  p_value = 2 * pt(abs(grid$x), pmax(grid$df, 0.001), lower.tail = FALSE))

res <- list(
  generator = "tools/make_mice_pool_fixtures.R",
  r_version = R.version.string,
  mice_version = as.character(packageVersion("mice")),
  notes = paste(
    "Matrices are m x p, one row per imputation. dfcom null = infinite;",
    "other infinite values (confidence limits when df is tiny) are the strings Inf, -Inf.",
    "scalar: pool.scalar(Q[, j], U[, j], n = dfcom + k, k = k) per parameter;",
    "riv is pool.scalar's r; lambda = (1 + 1/m) * b / t as in mice's pool.fitlist;",
    "summaries from mice's summary.mipo(conf.int = TRUE, conf.level = level).",
    "t_quantiles: R's qt(p, df); t_pvalues: 2 * pt(|statistic|, max(df, 0.001), lower.tail = FALSE)."
  ),
  scalar = scalar,
  pipeline = pipeline,
  t_quantiles = t_quantiles,
  t_pvalues = t_pvalues
)

# jsonlite prints at most 15 significant digits, so the numbers are formatted here
# ("%.17g", exact round trip) and inserted verbatim.
# +-Inf (confidence limits when df is tiny) are written as the strings "Inf" and "-Inf".
num17 <- function(x) {
  stopifnot(!anyNA(x))
  ifelse(is.finite(x), sprintf("%.17g", x), ifelse(x > 0, "\"Inf\"", "\"-Inf\""))
}
verbatim <- function(x) {
  if (is.list(x)) {
    return(lapply(x, verbatim))
  }
  if (!is.numeric(x)) {
    return(x)
  }
  if (is.matrix(x)) {
    rows <- apply(x, 1, function(r) paste0("[", paste(num17(r), collapse = ", "), "]"))
    return(structure(paste0("[", paste(rows, collapse = ", "), "]"), class = "json"))
  }
  if (inherits(x, "AsIs") || length(x) != 1) {
    return(structure(paste0("[", paste(num17(x), collapse = ", "), "]"), class = "json"))
  }
  structure(num17(x), class = "json")
}
json <- toJSON(verbatim(res), auto_unbox = TRUE, null = "null", pretty = TRUE,
               json_verbatim = TRUE)
writeLines(json, out)

# round-trip check: the numbers read back bit for bit
back <- fromJSON(out, simplifyVector = FALSE)
as_mat <- function(x, m) matrix(as.numeric(unlist(x)), nrow = m, byrow = TRUE)
for (i in seq_along(scalar)) {
  a <- scalar[[i]]
  b <- back$scalar[[i]]
  stopifnot(identical(as_mat(b$estimates, a$m), a$estimates),
            identical(as_mat(b$variances, a$m), a$variances))
  for (nm in names(a$expected)) {
    stopifnot(identical(as.numeric(unlist(b$expected[[nm]])), as.numeric(a$expected[[nm]])))
  }
}
for (i in seq_along(pipeline)) {
  a <- pipeline[[i]]
  b <- back$pipeline[[i]]
  stopifnot(identical(as_mat(b$estimates, a$m), a$estimates),
            identical(as_mat(b$variances, a$m), a$variances))
  for (nm in names(a$summary)) {
    stopifnot(identical(as.numeric(unlist(b$summary[[nm]])), as.numeric(a$summary[[nm]])))
  }
}
cat(sprintf("wrote %s: %d scalar cases, %d pipelines\n", out, length(scalar), length(pipeline)))
