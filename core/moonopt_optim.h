/*
 * moonopt_optim.h - the optimizer kernels of moonopt's core (included by moonopt.h).
 */
#ifndef MOONOPT_OPTIM_H
#define MOONOPT_OPTIM_H

#endif /* MOONOPT_OPTIM_H */
