#!/usr/bin/env Rscript
# Reference fits for mlmi's ordinal and negative-binomial GLMM families.
#
#   python tools/make_family_data.py          # writes the CSVs and cases.json
#   Rscript tools/make_family_refs.R [tests/fixtures/families] [case ...]
#
# For every case in cases.json (or only the cases named on the command line) it reads
# <name>.csv and writes <name>.json with R's fits:
#   ordinal: ordinal::clmm(factor(y, ordered = TRUE) ~ x1 + x2 + (<re_term>), nAGQ = 1)
#            (Laplace) and, for a random intercept only, also nAGQ = 10 (adaptive
#            Gauss-Hermite). logit P(Y <= j) = theta_j - x'beta - w'b.
#   negbin:  glmmTMB(y ~ x1 + x2 + (<re_term>), family = nbinom2) (Laplace; NB2,
#            Var = mu + mu^2/theta, theta = sigma(fit)), lme4::glmer.nb as a second
#            opinion where it runs, and for the Poisson-data case also glmer(poisson).
#            NB: glmer.nb's logLik is NOT comparable with glmmTMB's. NB2 with a log link is
#            not a canonical link, and lme4's Laplace approximation puts the expected
#            (Fisher) information mu*theta/(theta+mu) into the log-determinant, while
#            glmmTMB (like ordinal::clmm) uses the observed Hessian of the log-likelihood
#            in b. Both were reproduced to 1e-3 by hand (negbin_k60, where they differ by
#            0.2 at the same parameters). glmer.nb's fit is kept for information only.
# Each fit records: formula, thresholds and their SEs (ordinal), fixef, the full vcov
# with R's row/column names and order, VarCorr (random-effects covariance) with its
# names, NB theta, logLik, convergence information, warnings, the fit time in seconds,
# and the R / package versions.
#
# Matrices are stored as {"rownames": [...], "colnames": [...], "values": [[row], ...]}.
# Tested with R 4.2.2, ordinal 2022.11-16, glmmTMB 1.1.5, lme4 1.1-31, jsonlite 1.8.4.

suppressPackageStartupMessages({
  library(jsonlite)
  library(ordinal)
  library(glmmTMB)
  library(lme4)
})

args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args) >= 1) args[1] else "tests/fixtures/families"
only <- if (length(args) >= 2) args[-1] else character(0)
cases <- fromJSON(file.path(dir, "cases.json"), simplifyVector = FALSE)

versions <- list(
  R = R.version.string,
  ordinal = as.character(packageVersion("ordinal")),
  glmmTMB = as.character(packageVersion("glmmTMB")),
  TMB = as.character(packageVersion("TMB")),
  lme4 = as.character(packageVersion("lme4")),
  Matrix = as.character(packageVersion("Matrix")),
  jsonlite = as.character(packageVersion("jsonlite"))
)

mat <- function(m) {
  m <- as.matrix(m)
  # I(): a 1 x 1 matrix stays [[v]] with one-element name lists under auto_unbox
  list(rownames = I(rownames(m)), colnames = I(colnames(m)),
       values = lapply(seq_len(nrow(m)), function(i) I(unname(as.numeric(m[i, ])))))
}

named <- function(v) as.list(v)  # named numeric vector -> JSON object

# run expr, timing it and collecting its warnings (fit errors become list(error = msg))
timed <- function(expr) {
  warns <- character(0)
  t0 <- proc.time()[["elapsed"]]
  val <- tryCatch(
    withCallingHandlers(expr, warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    }),
    error = function(e) list(error = conditionMessage(e)))
  list(value = val, seconds = proc.time()[["elapsed"]] - t0, warnings = warns)
}

varcorr_matrix <- function(vc) {
  m <- as.matrix(vc)
  attr(m, "stddev") <- NULL
  attr(m, "correlation") <- NULL
  m
}

fit_clmm <- function(d, term, nagq) {
  formula <- paste0("factor(y, ordered = TRUE) ~ x1 + x2 + (", term, ")")
  r <- timed(clmm(as.formula(formula), data = d, nAGQ = nagq))
  out <- list(method = "ordinal::clmm", nAGQ = nagq, formula = formula,
              seconds = r$seconds, warnings = I(r$warnings))
  f <- r$value
  if (!inherits(f, "clmm")) return(c(out, list(error = f$error)))
  V <- vcov(f)
  th <- f$alpha
  se <- sqrt(diag(V))
  c(out, list(
    thresholds = named(th),
    thresholds_se = named(se[names(th)]),
    fixef = named(f$beta),
    fixef_se = named(se[names(f$beta)]),
    vcov = mat(V),
    VarCorr = mat(varcorr_matrix(VarCorr(f)$g)),
    logLik = as.numeric(logLik(f)),
    df = attr(logLik(f), "df"),
    nobs = nobs(f),
    ngroups = nlevels(d$g),
    convergence = list(optim_code = f$optRes$convergence,
                       max_grad = max(abs(f$gradient)),
                       cond_H = {ev <- eigen(f$Hessian, only.values = TRUE)$values
                                 max(ev) / min(ev)},
                       niter = as.character(f$info$niter))
  ))
}

fit_tmb <- function(d, term) {
  formula <- paste0("y ~ x1 + x2 + (", term, ")")
  r <- timed(glmmTMB(as.formula(formula), data = d, family = nbinom2))
  out <- list(method = "glmmTMB::glmmTMB(family = nbinom2)", nAGQ = 1, formula = formula,
              seconds = r$seconds, warnings = I(r$warnings))
  f <- r$value
  if (!inherits(f, "glmmTMB")) return(c(out, list(error = f$error)))
  V <- as.matrix(vcov(f)$cond)
  c(out, list(
    fixef = named(fixef(f)$cond),
    fixef_se = named(sqrt(diag(V))),
    vcov = mat(V),
    VarCorr = mat(varcorr_matrix(VarCorr(f)$cond$g)),
    nb_theta = sigma(f),
    logLik = as.numeric(logLik(f)),
    df = attr(logLik(f), "df"),
    nobs = nobs(f),
    ngroups = nlevels(d$g),
    convergence = list(optim_code = f$fit$convergence, message = f$fit$message,
                       pdHess = f$sdr$pdHess)
  ))
}

fit_lme4 <- function(d, term, pois = FALSE) {
  formula <- paste0("y ~ x1 + x2 + (", term, ")")
  r <- if (pois) timed(glmer(as.formula(formula), data = d, family = poisson))
       else timed(glmer.nb(as.formula(formula), data = d))
  out <- list(method = if (pois) "lme4::glmer(family = poisson)" else "lme4::glmer.nb",
              nAGQ = 1, formula = formula, seconds = r$seconds, warnings = I(r$warnings))
  f <- r$value
  if (!inherits(f, "merMod")) return(c(out, list(error = f$error)))
  V <- as.matrix(vcov(f))
  res <- c(out, list(
    fixef = named(fixef(f)),
    fixef_se = named(sqrt(diag(V))),
    vcov = mat(V),
    VarCorr = mat(varcorr_matrix(VarCorr(f)$g)),
    logLik = as.numeric(logLik(f)),
    df = attr(logLik(f), "df"),
    nobs = nobs(f),
    ngroups = nlevels(d$g),
    isSingular = isSingular(f),
    convergence = list(messages = f@optinfo$conv$lme4$messages)
  ))
  if (!pois) res$nb_theta <- getME(f, "glmer.nb.theta")
  res
}

for (name in names(cases)) {
  if (length(only) && !(name %in% only)) next
  case <- cases[[name]]
  d <- read.csv(file.path(dir, paste0(name, ".csv")))
  d$g <- factor(d$g)
  fits <- list()
  if (case$family == "ordinal") {
    fits[["clmm_nAGQ1"]] <- fit_clmm(d, case$re_term, 1)
    if (case$re_term == "1 | g") fits[["clmm_nAGQ10"]] <- fit_clmm(d, case$re_term, 10)
  } else {
    fits[["glmmTMB"]] <- fit_tmb(d, case$re_term)
    fits[["glmer.nb"]] <- fit_lme4(d, case$re_term)
    if (isTRUE(case$poisson_data)) fits[["glmer_poisson"]] <- fit_lme4(d, case$re_term, TRUE)
  }
  out <- c(list(name = name, csv = paste0(name, ".csv")), case,
           list(fits = fits, versions = versions,
                generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z", tz = "UTC")))
  path <- file.path(dir, paste0(name, ".json"))
  tmp <- paste0(path, ".tmp")
  write_json(out, tmp, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null")
  file.rename(tmp, path)
  for (k in names(fits)) {
    f <- fits[[k]]
    cat(sprintf("%-17s %-13s %7.2f s  logLik %s  %s\n", name, k, f$seconds,
                if (is.null(f$logLik)) "NA" else format(f$logLik, digits = 10),
                if (!is.null(f$error)) paste("ERROR:", f$error)
                else if (length(f$warnings)) paste("warn:", paste(f$warnings, collapse = "; "))
                else ""))
  }
}
