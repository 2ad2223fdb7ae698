# Reference for mlmi.methods.polr.fit_polr and the stratified design of polr / polyreg:
# MASS::polr and nnet::multinom on simulated stratified data (5 studies as a factor,
# two predictors, an ordinal and a nominal response with 4 categories, n = 400) with
# frequency weights (the augmented fits are weighted). Coefficients, thresholds, the
# inverse Hessian and the log-likelihood.
# Run: Rscript tools/make_polr_polyreg_fixture.R  (writes tests/fixtures/polr_polyreg.json)
suppressPackageStartupMessages({library(MASS); library(nnet); library(jsonlite)})
set.seed(20261203)
n <- 400
st <- sample(1:5, n, replace = TRUE)
x1 <- rnorm(n); x2 <- rpois(n, 1)
w <- sample(c(0.5, 1, 2), n, replace = TRUE)
loc <- c(0, 0.5, -0.4, 1.0, 0.2)[st]
eta <- loc + 0.8 * x1 - 0.3 * x2
theta <- c(-1, 0.2, 1.3)
cum <- plogis(outer(-eta, theta, "+"))
u <- runif(n)
yo <- rowSums(u > cum)                                    # codes 0..3
e2 <- cbind(0, 0.3 + 1.0 * x1 + 0.2 * loc, -0.5 - 0.5 * x1 + 0.4 * x2 + loc,
            0.1 + 0.3 * x2 - loc)
p2 <- exp(e2) / rowSums(exp(e2))
yn <- apply(p2, 1, function(pr) sample(0:3, 1, prob = pr))
d <- data.frame(yo = factor(yo, levels = 0:3, ordered = TRUE), yn = factor(yn, levels = 0:3),
                st = factor(st), x1 = x1, x2 = x2, w = w)
fo <- polr(yo ~ st + x1 + x2, data = d, weights = w, Hess = TRUE, method = "logistic",
           control = list(reltol = 1e-14, maxit = 10000))
vo <- vcov(fo)                                            # order: beta (st2..st5, x1, x2), zeta
fn <- multinom(yn ~ 0 + st + x1 + x2, data = d, weights = w, Hess = TRUE, trace = FALSE,
               reltol = 1e-14, maxit = 10000)
out <- list(st = st, x1 = x1, x2 = x2, w = w, y_ordinal = yo, y_nominal = yn,
            polr_beta = unname(coef(fo)), polr_zeta = unname(fo$zeta),
            polr_vcov = unname(vo), polr_loglik = as.numeric(logLik(fo)),
            polr_convergence = fo$convergence,
            multinom_coef = unname(t(coef(fn))),          # P x (L-1): column = category
            multinom_vcov = unname(vcov(fn)),
            multinom_loglik = as.numeric(logLik(fn)))
writeLines(toJSON(out, digits = 17, matrix = "rowmajor"), "tests/fixtures/polr_polyreg.json")
