# Reference for mlmi.methods._multinom.fit_multinom: nnet::multinom on simulated data
# (3 categories, intercept + 2 predictors, n = 300), coefficients and the inverse
# Hessian. Run: Rscript tools/make_multinom_fixture.R  (writes tests/fixtures/multinom_nnet.json)
suppressPackageStartupMessages({library(nnet); library(jsonlite)})
set.seed(20261202)
n <- 300
x1 <- rnorm(n); x2 <- rnorm(n)
eta <- cbind(0, 0.3 + 1.0 * x1 - 0.7 * x2, -0.5 + 0.2 * x1 + 0.8 * x2)
p <- exp(eta) / rowSums(exp(eta))
y <- apply(p, 1, function(pr) sample(0:2, 1, prob = pr))
fit <- multinom(factor(y) ~ x1 + x2, Hess = TRUE, trace = FALSE, reltol = 1e-14, maxit = 1000)
out <- list(x1 = x1, x2 = x2, y = y,
            coef = unname(t(coef(fit))),          # P x (L-1): column = category
            vcov = unname(vcov(fit)),             # order: category 1's P, then category 2's
            loglik = as.numeric(logLik(fit)))
writeLines(toJSON(out, digits = 17, matrix = "rowmajor"), "tests/fixtures/multinom_nnet.json")
