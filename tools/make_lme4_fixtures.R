#!/usr/bin/env Rscript
# Make the lme4 reference fixtures for mlmi's GLMM engine.
#
#   Rscript tools/make_lme4_fixtures.R tests/fixtures/lme4
#   Rscript tools/make_lme4_fixtures.R --verify-shared ../shared/refs/lme4
#
# The first form writes, for every dataset below, <name>_complete.csv (before
# amputation), <name>_missing.csv (after; empty field = NA) and <name>.json with
# the lme4 fits, in the layout of the shared reference fits (../shared/refs/lme4).
# The second form regenerates the two shared reference datasets from their seeds
# with this script's generator and fit extractor and checks that data and fits
# agree with the shared files (everything except the timing field `elapsed`).
#
# Data generation is the paper's design (shared/spec/METHOD.md section 6); the draw
# order below reproduces the shared reference data bit for bit (checked by
# --verify-shared), so the same seed gives the same data in both.
#
# Tested with R 4.2.2, lme4 1.1-31, Matrix 1.5-3, mvtnorm 1.1-3, jsonlite 1.8.4.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  library(mvtnorm)
})

RNGkind("Mersenne-Twister", "Inversion", "Rejection")

# ---------------------------------------------------------------------------
# Design constants (METHOD.md section 6)
# ---------------------------------------------------------------------------

ALPHA <- c(-1.85, 1.05, -0.04)
LAMBDA <- matrix(c(0.200, 0.005, 0.005, 0.200), 2, 2)
OMEGA <- list(
  weak     = matrix(c(0.100, -0.024, -0.024, 0.250), 2, 2),
  moderate = matrix(c(0.75, -0.30, -0.30, 0.85), 2, 2),
  strong   = matrix(c(2.75, -1.82, -1.82, 2.85), 2, 2)
)
P_SPORADIC <- 0.15
D1_MAR <- c(x1 = 1, x2 = 0.5)

# ---------------------------------------------------------------------------
# Data generation and amputation
# ---------------------------------------------------------------------------

# Complete data: per study nu ~ N(0, Lambda), x1, x2, then u ~ N(0, Omega), then y
# (binary y redrawn within the study until it has at least one event).
generate_complete <- function(k, N, omega, outcome) {
  ni <- N / k
  stopifnot(ni == round(ni), outcome %in% c("bin", "cont"))
  Omega <- OMEGA[[omega]]
  studies <- vector("list", k)
  for (i in seq_len(k)) {
    nu <- rmvnorm(1, sigma = LAMBDA)
    x1 <- rbinom(ni, 1, plogis(0.4 + nu[1]))
    x2 <- rpois(ni, exp(0 + nu[2]))
    u <- rmvnorm(1, sigma = Omega)
    # (this grouping of the sum reproduces the shared reference data exactly)
    eta <- ALPHA[1] + ALPHA[2] * x1 + ALPHA[3] * x2 + (u[1] + u[2] * x1)
    if (outcome == "bin") {
      repeat {
        y <- rbinom(ni, 1, plogis(eta))
        if (sum(y) > 0) break
      }
    } else {
      y <- eta + rnorm(ni)
    }
    studies[[i]] <- data.frame(st = i, y = y, x1 = x1, x2 = x2)
  }
  do.call(rbind, studies)
}

# MAR sporadic missingness in x1 then x2 (logit P(miss) = d0 + d1 y with
# d0 = logit(0.15) - d1 mean(y)), then round(k * pi_sys) systematically missing
# studies for x1 and, independently, for x2.
ampute <- function(d, k, pi_sys) {
  n <- nrow(d)
  m <- d
  for (v in c("x1", "x2")) {
    d1 <- D1_MAR[[v]]
    d0 <- qlogis(P_SPORADIC) - d1 * mean(d$y)
    r <- runif(n) < plogis(d0 + d1 * d$y)
    m[[v]][r] <- NA
  }
  sys_x1 <- sample(1:k, round(k * pi_sys))
  sys_x2 <- sample(1:k, round(k * pi_sys))
  m$x1[m$st %in% sys_x1] <- NA
  m$x2[m$st %in% sys_x2] <- NA
  list(data = m, sys_x1 = sort(sys_x1), sys_x2 = sort(sys_x2))
}

# One dataset: generate, amputate, optionally relabel studies / add a factor.
make_dataset <- function(seed, k, N, omega, outcome, pi_sys = 0.3,
                         study_labels = NULL, add_grp = FALSE) {
  set.seed(seed)
  complete <- generate_complete(k, N, omega, outcome)
  a <- ampute(complete, k, pi_sys)
  missing <- a$data
  sys_x1 <- a$sys_x1
  sys_x2 <- a$sys_x2
  if (add_grp) {
    grp <- sample(c("a", "b", "c"), nrow(complete), replace = TRUE)
    complete$grp <- grp
    missing$grp <- grp
  }
  if (!is.null(study_labels)) {
    complete$st <- study_labels[complete$st]
    missing$st <- study_labels[missing$st]
    sys_x1 <- study_labels[sys_x1]
    sys_x2 <- study_labels[sys_x2]
  }
  list(complete = complete, missing = missing, sys_x1 = sys_x1, sys_x2 = sys_x2)
}

# ---------------------------------------------------------------------------
# Fitting and extraction (the shared reference layout)
# ---------------------------------------------------------------------------

mat <- function(m) {
  m <- as.matrix(m)
  list(rownames = I(rownames(m)), colnames = I(colnames(m)),
       values = unname(m))
}

# Fit with messages and warnings captured (and muffled).
run_fit <- function(expr_fun) {
  captured <- character(0)
  t0 <- proc.time()[["elapsed"]]
  fit <- withCallingHandlers(
    expr_fun(),
    message = function(m) {
      captured <<- c(captured, paste0("message: ", conditionMessage(m)))
      invokeRestart("muffleMessage")
    },
    warning = function(w) {
      captured <<- c(captured, paste0("warning: ", conditionMessage(w)))
      invokeRestart("muffleWarning")
    }
  )
  list(fit = fit, captured = captured, elapsed = proc.time()[["elapsed"]] - t0)
}

fit_record <- function(fit, formula, nAGQ, captured, elapsed) {
  is_glmm <- is(fit, "glmerMod")
  grp <- names(ngrps(fit))
  stopifnot(length(grp) == 1)
  V <- as.matrix(vcov(fit))
  V_rx <- sigma(fit)^2 * chol2inv(getME(fit, "RX"))
  dimnames(V_rx) <- dimnames(V)
  vc <- VarCorr(fit)[[grp]]
  cov <- vc
  attributes(cov) <- attributes(vc)[c("dim", "dimnames")]
  re <- ranef(fit, condVar = TRUE)[[grp]]
  pv <- attr(re, "postVar")
  q <- ncol(re)
  cond_var <- lapply(seq_len(dim(pv)[3]), function(j) matrix(pv[, , j], q, q))
  re_mat <- as.matrix(re)
  attr(re_mat, "postVar") <- NULL
  ll <- logLik(fit)
  conv <- fit@optinfo$conv
  list(
    class = class(fit)[1],
    family = family(fit)$family,
    nAGQ = if (is_glmm) nAGQ else NULL,
    REML = isREML(fit),
    nobs = nobs(fit),
    ngroups = unname(as.integer(ngrps(fit))),
    formula = formula,
    fixef = as.list(fixef(fit)),
    vcov = mat(V),
    vcov_chol2inv_RX = mat(V_rx),
    VarCorr_cov = mat(cov),
    VarCorr_sd = as.list(attr(vc, "stddev")),
    VarCorr_cor = mat(attr(vc, "correlation")),
    sigma = sigma(fit),
    theta = as.list(getME(fit, "theta")),
    ranef_mode = list(study = I(rownames(re_mat)), values = mat(re_mat)),
    ranef_condVar = cond_var,
    logLik = as.numeric(ll),
    logLik_df = attr(ll, "df"),
    # deviance() of a REML fit is its REML criterion (with a deprecation warning)
    deviance = suppressWarnings(deviance(fit)),
    minus2logLik = -2 * as.numeric(ll),
    AIC = AIC(fit),
    REMLcrit = if (isREML(fit)) REMLcrit(fit) else NULL,
    isSingular = isSingular(fit),
    optimizer = fit@optinfo$optimizer,
    opt_conv = conv$opt,
    feval = fit@optinfo$feval,
    lme4_conv_messages = conv$lme4$messages,
    optinfo_warnings = fit@optinfo$warnings,
    captured_messages = captured,
    elapsed = elapsed,
    # Added to the shared layout: the optimizer's convergence code and lme4's
    # convergence checks, always as arrays (empty when there is nothing).
    optinfo_conv = list(
      opt = conv$opt,
      lme4_code = I(as.integer(unlist(conv$lme4$code))),
      lme4_messages = I(as.character(unlist(conv$lme4$messages))),
      optimizer_message = if (is.null(fit@optinfo$message)) NULL
                          else as.character(fit@optinfo$message),
      warnings = I(as.character(unlist(fit@optinfo$warnings)))
    )
  )
}

fit_glmer <- function(formula, data, family, nAGQ) {
  r <- run_fit(function() {
    glmer(as.formula(formula), data = data, family = family, nAGQ = nAGQ)
  })
  fit_record(r$fit, formula, nAGQ, r$captured, r$elapsed)
}

fit_lmer <- function(formula, data, REML) {
  r <- run_fit(function() lmer(as.formula(formula), data = data, REML = REML))
  fit_record(r$fit, formula, NULL, r$captured, r$elapsed)
}

F_ANALYSIS <- "y ~ x1 + x2 + (1 + x1 | st)"
F_IMP_X1 <- "x1 ~ y + x2 + (1 + y | st)"
F_IMP_X2 <- "x2 ~ y + x1 + (1 + y | st)"

# The fit set of the shared references, for one data kind ("complete" or "cc").
standard_fits <- function(kind, data, outcome) {
  fits <- list()
  if (outcome == "bin") {
    fits[["analysis_binom/nAGQ1"]] <- fit_glmer(F_ANALYSIS, data, binomial, 1)
    fits[["analysis_binom/nAGQ0"]] <- fit_glmer(F_ANALYSIS, data, binomial, 0)
  } else {
    fits[["analysis_lmer/REML"]] <- fit_lmer(F_ANALYSIS, data, TRUE)
    fits[["analysis_lmer/ML"]] <- fit_lmer(F_ANALYSIS, data, FALSE)
  }
  fits[["imp_x1_binom/nAGQ1"]] <- fit_glmer(F_IMP_X1, data, binomial, 1)
  fits[["imp_x2_pois/nAGQ1"]] <- fit_glmer(F_IMP_X2, data, poisson, 1)
  fits[["imp_x1_binom/nAGQ0"]] <- fit_glmer(F_IMP_X1, data, binomial, 0)
  fits[["imp_x2_pois/nAGQ0"]] <- fit_glmer(F_IMP_X2, data, poisson, 0)
  names(fits) <- paste0(kind, "/", names(fits))
  fits
}

# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

csv_path <- function(dir, name, what) file.path(dir, paste0(name, "_", what, ".csv"))

# Write both CSVs and read them back, so the fits use exactly the numbers a
# reader of the CSV sees (write.csv keeps 15 significant digits).
write_and_reload <- function(ds, dir, name) {
  write.csv(ds$complete, csv_path(dir, name, "complete"), row.names = FALSE, na = "")
  write.csv(ds$missing, csv_path(dir, name, "missing"), row.names = FALSE, na = "")
  complete <- read.csv(csv_path(dir, name, "complete"))
  missing <- read.csv(csv_path(dir, name, "missing"))
  list(complete = complete, missing = missing, cc = missing[complete.cases(missing), ])
}

versions_block <- function() {
  list(R = R.version.string,
       lme4 = as.character(packageVersion("lme4")),
       Matrix = as.character(packageVersion("Matrix")),
       mice = as.character(packageVersion("mice")),
       mvtnorm = as.character(packageVersion("mvtnorm")))
}

fixture_object <- function(spec, ds, data, fits, extra = list()) {
  omega <- OMEGA[[spec$omega]]
  obj <- list(
    spec = spec,
    datagen_setup = list(alpha = ALPHA,
                         omega = c(omega[1, 1], omega[2, 2], omega[1, 2], 1)),
    n = nrow(data$complete),
    n_cc = nrow(data$cc),
    n_mis_x1 = sum(is.na(data$missing$x1)),
    n_mis_x2 = sum(is.na(data$missing$x2)),
    sys_missing_x1 = ds$sys_x1,
    sys_missing_x2 = ds$sys_x2
  )
  obj <- c(obj, extra)
  obj$fits <- fits
  obj$versions <- versions_block()
  obj
}

to_json_text <- function(obj) {
  toJSON(obj, auto_unbox = TRUE, pretty = TRUE, digits = NA,
         null = "null", na = "null")
}

write_json_fixture <- function(obj, dir, name) {
  writeLines(to_json_text(obj), file.path(dir, paste0(name, ".json")), useBytes = TRUE)
}

spec_of <- function(name, seed, k, omega, outcome, N, pi_sys = 0.3, ...) {
  c(list(name = name, seed = seed, k = k, omega = omega, outcome = outcome,
         N = N, pi_sys = pi_sys, mechanism = "MAR"), list(...))
}

# ---------------------------------------------------------------------------
# The fixture set
# ---------------------------------------------------------------------------

# Standard datasets: the shared fit set on complete and complete-case data.
make_standard <- function(dir, name, seed, k, omega, outcome, N = 3000) {
  ds <- make_dataset(seed, k, N, omega, outcome)
  data <- write_and_reload(ds, dir, name)
  fits <- c(standard_fits("complete", data$complete, outcome),
            standard_fits("cc", data$cc, outcome))
  spec <- spec_of(name, seed, k, omega, outcome, N)
  obj <- fixture_object(spec, ds, data, fits)
  write_json_fixture(obj, dir, name)
  invisible(list(obj = obj, data = data))
}

# Singular datasets: search seeds until the analysis model is singular.
make_singular <- function(dir, name, outcome, seed_start, k, N, omega,
                          max_tries = 500) {
  for (seed in seed_start + 0:(max_tries - 1)) {
    ds <- make_dataset(seed, k, N, omega, outcome)
    if (outcome == "bin") {
      cand <- list("complete/analysis_binom/nAGQ1" =
                     fit_glmer(F_ANALYSIS, ds$complete, binomial, 1))
    } else {
      cand <- list("complete/analysis_lmer/REML" = fit_lmer(F_ANALYSIS, ds$complete, TRUE),
                   "complete/analysis_lmer/ML" = fit_lmer(F_ANALYSIS, ds$complete, FALSE))
    }
    if (all(vapply(cand, function(f) isTRUE(f$isSingular), logical(1)))) break
  }
  if (!all(vapply(cand, function(f) isTRUE(f$isSingular), logical(1)))) {
    stop(name, ": no singular fit in ", max_tries, " seeds from ", seed_start)
  }
  tried <- seed - seed_start + 1
  data <- write_and_reload(ds, dir, name)
  if (outcome == "bin") {
    fits <- list(
      "complete/analysis_binom/nAGQ1" = fit_glmer(F_ANALYSIS, data$complete, binomial, 1),
      "complete/analysis_binom/nAGQ0" = fit_glmer(F_ANALYSIS, data$complete, binomial, 0))
  } else {
    fits <- list(
      "complete/analysis_lmer/REML" = fit_lmer(F_ANALYSIS, data$complete, TRUE),
      "complete/analysis_lmer/ML" = fit_lmer(F_ANALYSIS, data$complete, FALSE))
  }
  stopifnot(all(vapply(fits[grepl("nAGQ1|REML|ML", names(fits))],
                       function(f) isTRUE(f$isSingular), logical(1))))
  criterion <- if (outcome == "bin") "isSingular(glmer nAGQ=1)" else "isSingular(lmer REML) & isSingular(lmer ML)"
  spec <- spec_of(name, seed, k, omega, outcome, N,
                  seed_search = list(start = seed_start, tried = tried,
                                     criterion = criterion))
  obj <- fixture_object(spec, ds, data, fits)
  write_json_fixture(obj, dir, name)
  message(sprintf("  %s: singular at seed %d (%d seed(s) tried)", name, seed, tried))
  invisible(list(obj = obj, data = data))
}

make_ri_agq <- function(dir, name = "ri_agq", seed = 301) {
  k <- 10; N <- 1000; omega <- "moderate"
  ds <- make_dataset(seed, k, N, omega, "bin")
  data <- write_and_reload(ds, dir, name)
  fits <- list()
  for (q in c(1, 5, 15)) {
    fits[[paste0("complete/ri_binom/nAGQ", q)]] <-
      fit_glmer("y ~ x1 + x2 + (1 | st)", data$complete, binomial, q)
  }
  for (q in c(1, 5, 15)) {
    fits[[paste0("complete/ri_pois/nAGQ", q)]] <-
      fit_glmer("x2 ~ y + x1 + (1 | st)", data$complete, poisson, q)
  }
  # lme4 1.1-31 reports, for nAGQ > 1, a log-likelihood built from deviance
  # residuals: for the Poisson fits it lacks the saturated log-likelihood
  # sum(dpois(x2, x2, log = TRUE)) that the nAGQ = 1 value contains (lme4 issue
  # #161). Binary 0/1 data have saturated log-likelihood 0, so no shift there.
  spec <- spec_of(name, seed, k, omega, "bin", N,
                  poisson_saturated_loglik = sum(dpois(data$complete$x2, data$complete$x2, log = TRUE)),
                  notes = paste("lme4's logLik for the nAGQ > 1 Poisson fits omits",
                                "poisson_saturated_loglik (lme4 issue #161): compare",
                                "logLik(nAGQ>1) + poisson_saturated_loglik with nAGQ1"))
  write_json_fixture(fixture_object(spec, ds, data, fits), dir, name)
}

# Slope-only model on bin_k10_strong's complete data; the JSON points at that
# dataset's CSVs with the top-level key "data" instead of repeating them.
make_slope_only <- function(dir, base, name = "slope_only") {
  fits <- list("complete/slope_only_binom/nAGQ1" =
                 fit_glmer("y ~ x1 + x2 + (0 + x1 | st)", base$data$complete, binomial, 1))
  obj <- base$obj
  obj$spec$name <- name
  obj$spec$notes <- paste("data are bin_k10_strong's CSVs (see top-level key 'data');",
                          "random slope without random intercept (misspecified on purpose)")
  keep <- c("spec", "datagen_setup", "n", "n_cc", "n_mis_x1", "n_mis_x2",
            "sys_missing_x1", "sys_missing_x2")
  obj <- c(obj[keep], list(data = base$obj$spec$name, fits = fits,
                           versions = versions_block()))
  write_json_fixture(obj, dir, name)
}

make_factor_labels <- function(dir, name = "factor_labels", seed = 401) {
  k <- 8; N <- 800; omega <- "moderate"
  labels <- sprintf("S%02d", seq_len(k))
  ds <- make_dataset(seed, k, N, omega, "bin", study_labels = labels, add_grp = TRUE)
  data <- write_and_reload(ds, dir, name)
  stopifnot(is.character(data$complete$st))
  fits <- list(
    "complete/analysis_grp_binom/nAGQ1" =
      fit_glmer("y ~ x1 + grp + (1 + x1 | st)", data$complete, binomial, 1),
    "complete/x2_grp_lmer/REML" =
      fit_lmer("x2 ~ y + grp + (1 | st)", data$complete, TRUE))
  spec <- spec_of(name, seed, k, omega, "bin", N,
                  notes = "study labels are strings S01..S08; grp ~ uniform{a,b,c}, not in the outcome model")
  write_json_fixture(fixture_object(spec, ds, data, fits), dir, name)
}

make_all <- function(dir) {
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  step <- function(label) message("- ", label)
  step("bin_k6_weak");       make_standard(dir, "bin_k6_weak", 101, 6, "weak", "bin")
  step("bin_k10_strong");    base <- make_standard(dir, "bin_k10_strong", 102, 10, "strong", "bin")
  step("bin_k30_moderate");  make_standard(dir, "bin_k30_moderate", 103, 30, "moderate", "bin")
  step("cont_k6_strong");    make_standard(dir, "cont_k6_strong", 201, 6, "strong", "cont")
  step("cont_k30_weak");     make_standard(dir, "cont_k30_weak", 202, 30, "weak", "cont")
  step("sing_bin");          make_singular(dir, "sing_bin", "bin", 5001, k = 6, N = 600, omega = "weak")
  step("sing_cont");         make_singular(dir, "sing_cont", "cont", 6001, k = 6, N = 600, omega = "weak")
  step("ri_agq");            make_ri_agq(dir)
  step("slope_only");        make_slope_only(dir, base)
  step("factor_labels");     make_factor_labels(dir)
}

# ---------------------------------------------------------------------------
# Summary: convergence and singularity of every fit written
# ---------------------------------------------------------------------------

summarize <- function(dir) {
  files <- sort(list.files(dir, pattern = "\\.json$", full.names = TRUE))
  n_bad <- 0
  for (f in files) {
    obj <- fromJSON(f, simplifyVector = FALSE)
    for (key in names(obj$fits)) {
      fit <- obj$fits[[key]]
      msgs <- unlist(fit$optinfo_conv$lme4_messages)
      if (is.null(fit$optinfo_conv)) msgs <- unlist(fit$lme4_conv_messages)
      conv_msgs <- msgs[!grepl("singular", msgs)]
      bad <- !identical(as.numeric(fit$opt_conv), 0) || length(conv_msgs) > 0
      n_bad <- n_bad + bad
      cat(sprintf("%-22s %-34s singular=%-5s opt_conv=%s%s\n", basename(f), key,
                  fit$isSingular, fit$opt_conv,
                  if (length(conv_msgs)) paste0("  ", paste(conv_msgs, collapse = " | ")) else ""))
    }
  }
  cat(sprintf("%d fit(s) with a convergence problem\n", n_bad))
}

# ---------------------------------------------------------------------------
# Verification against the shared reference fits
# ---------------------------------------------------------------------------

# The shared refs were made with pi_sys = 0.1; same generator, same fit set.
# They were fitted to the in-memory data, not to the data read back from their
# CSVs (this script's fixtures are): continuous y then differs in the 15th
# significant digit, which moves lme4's optimum slightly (by ~1e-6 in fixef and
# theta for ref4). Both are checked; the printed differences show the size.
max_abs_diff <- function(fits_a, fits_b, field) {
  d <- vapply(names(fits_b), function(k) {
    x <- as.numeric(unlist(fits_a[[k]][[field]]))
    y <- as.numeric(unlist(fits_b[[k]][[field]]))
    max(abs(x - y))
  }, numeric(1))
  max(d)
}

verify_shared <- function(shared_dir) {
  refs <- list(
    list(name = "ref1_bin_k10_moderate", seed = 1, k = 10, omega = "moderate", outcome = "bin"),
    list(name = "ref4_cont_k15_moderate", seed = 4, k = 15, omega = "moderate", outcome = "cont"))
  tmp <- tempfile("lme4_verify")
  dir.create(tmp)
  ok <- TRUE
  for (r in refs) {
    ds <- make_dataset(r$seed, r$k, 3000, r$omega, r$outcome, pi_sys = 0.1)
    data <- write_and_reload(ds, tmp, r$name)
    for (what in c("complete", "missing")) {
      same <- identical(readLines(csv_path(tmp, r$name, what)),
                        readLines(csv_path(shared_dir, r$name, what)))
      cat(sprintf("%s_%s.csv identical: %s\n", r$name, what, same))
      ok <- ok && same
    }
    in_memory <- list(complete = ds$complete, missing = ds$missing,
                      cc = ds$missing[complete.cases(ds$missing), ])
    theirs <- fromJSON(file.path(shared_dir, paste0(r$name, ".json")), simplifyVector = FALSE)
    drop <- function(x) {
      x$fits <- lapply(x$fits, function(f) f[setdiff(names(f), c("elapsed", "optinfo_conv"))])
      x
    }
    for (source in c("in-memory", "csv")) {
      d <- if (source == "csv") data else in_memory
      fits <- c(standard_fits("complete", d$complete, r$outcome),
                standard_fits("cc", d$cc, r$outcome))
      obj <- fixture_object(r, ds, d, fits)
      mine <- fromJSON(to_json_text(obj), simplifyVector = FALSE)
      same <- identical(drop(mine), drop(theirs))
      diffs <- vapply(c("fixef", "theta", "sigma", "logLik"), function(field)
        max_abs_diff(mine$fits, theirs$fits, field), numeric(1))
      cat(sprintf("%s.json, fits to %s data: identical except elapsed: %s; max |diff|: %s\n",
                  r$name, source, same,
                  paste(sprintf("%s %.1e", names(diffs), diffs), collapse = ", ")))
      if (source == "in-memory") ok <- ok && same
    }
  }
  unlink(tmp, recursive = TRUE)
  if (!ok) quit(status = 1)
}

main <- function(args) {
  if (length(args) >= 1 && args[1] == "--verify-shared") {
    verify_shared(if (length(args) >= 2) args[2] else "../shared/refs/lme4")
    return(invisible())
  }
  dir <- if (length(args) >= 1) args[1] else "tests/fixtures/lme4"
  make_all(dir)
  summarize(dir)
}

main(commandArgs(trailingOnly = TRUE))
