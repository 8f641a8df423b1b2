"""Running the kernels over many datasets: batching and chunks over devices, starts and warm
starts, the samplers settings name, escalation of failing fits, and `hj.sample` itself."""
